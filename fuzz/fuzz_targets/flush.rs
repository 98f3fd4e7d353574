//! `Flusher` under a partial-writing writer (logic in
//! `netbuf::fuzzing::flush`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netbuf::fuzzing::flush(data));
