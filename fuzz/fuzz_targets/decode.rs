//! Frame decoder of `LinearBuffer` and `ChainedBuffer` against a reference
//! decode (logic in `netbuf::test_util::fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netbuf::test_util::fuzz::decode(data));
