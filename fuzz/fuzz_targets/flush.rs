//! `Flusher` under a partial-writing writer (logic in
//! `netbuf::test_util::fuzz::flush`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netbuf::test_util::fuzz::flush(data));
