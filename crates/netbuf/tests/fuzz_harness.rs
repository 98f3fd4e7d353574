//! A bounded, deterministic run of the fuzz targets
//! (`netbuf::test_util::fuzz`, the same functions the `cargo fuzz` targets
//! in `fuzz/` call): pseudo-random inputs, valid frame streams with
//! mutations, and the committed seed corpus (`fuzz/corpus/*`) with
//! mutations. Fixed seeds: every run feeds the same inputs.
//!
//! `FUZZ_ITERS` sets the inputs per generator (default 300); when only
//! `PROPTEST_CASES` is set (`scripts/memcheck.sh` runs this binary under
//! valgrind with 16) it is that.

use std::path::PathBuf;

use netbuf::test_util::{Rng, fuzz};

fn iters() -> usize {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    match (env("FUZZ_ITERS"), env("PROPTEST_CASES")) {
        (Some(n), _) => n,
        (None, Some(c)) => c.max(4),
        (None, None) => 300,
    }
}

fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            2 => {
                let at = rng.below(v.len() + 1);
                v.truncate(at);
            }
            3 => {
                let at = rng.below(v.len() + 1);
                let n = rng.below(16);
                let extra = rng.bytes(n);
                v.splice(at..at, extra);
            }
            _ if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + rng.below(64)).min(v.len());
                let copy = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, copy);
            }
            _ => {}
        }
    }
    v
}

/// A decode input: 7 configuration bytes, the framing byte (one of the
/// three framings, sometimes with the validating wrapper), then a stream of
/// frames in that framing, mostly valid.
fn frame_stream(rng: &mut Rng) -> Vec<u8> {
    use netbuf::framing::{Framing, HeaderBytes};
    let mut v = rng.bytes(7);
    let which = rng.below(3) as u8 | if rng.below(4) == 0 { 0x80 } else { 0 };
    v.push(which);
    let framing = fuzz::framings(usize::MAX)[(which % 3) as usize];
    for _ in 0..rng.below(12) {
        let len = match rng.below(10) {
            0 => rng.below(20_000),
            1..=3 => 0,
            _ => rng.below(300),
        };
        // The header's own bytes: mostly small (the validating wrapper
        // rejects a first byte of 0xF0 or more), sometimes anything.
        let tag = if rng.below(20) == 0 {
            rng.next_u64() as u8
        } else {
            rng.below(0xF0) as u8
        };
        let own = HeaderBytes::new(&vec![tag; framing.header_len()]);
        let h = framing.encode_header(&own, len).expect("no limit");
        v.extend_from_slice(h.as_slice());
        v.extend(rng.bytes(len));
    }
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn decode_random_inputs() {
    let mut rng = Rng::new(1);
    for _ in 0..iters() {
        let n = rng.below(600);
        fuzz::decode(&rng.bytes(n));
    }
}

#[test]
fn decode_mutated_frame_streams() {
    let mut rng = Rng::new(2);
    for i in 0..iters() {
        let v = frame_stream(&mut rng);
        let v = if i % 4 == 0 { v } else { mutate(&mut rng, v) };
        fuzz::decode(&v);
    }
}

#[test]
fn flush_random_inputs() {
    let mut rng = Rng::new(3);
    for _ in 0..iters() {
        let n = rng.below(300);
        fuzz::flush(&rng.bytes(n));
    }
}

#[test]
fn seed_corpus_and_mutations() {
    let mut rng = Rng::new(4);
    let decode = corpus("decode");
    let flush = corpus("flush");
    assert!(
        !decode.is_empty() && !flush.is_empty(),
        "seed corpus missing (fuzz/corpus/{{decode,flush}})"
    );
    let rounds = (iters() / 50).max(2);
    for seed in &decode {
        fuzz::decode(seed);
        for _ in 0..rounds {
            fuzz::decode(&mutate(&mut rng, seed.clone()));
        }
    }
    for seed in &flush {
        fuzz::flush(seed);
        for _ in 0..rounds {
            fuzz::flush(&mutate(&mut rng, seed.clone()));
        }
    }
}

/// Edge inputs, and any crash a fuzzer finds (added here as it is found).
#[test]
fn regressions() {
    let cases: &[&[u8]] = &[
        b"",
        &[0],
        // Maximal announced length, every kind byte.
        &[0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0],
        &[
            7, 3, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        // A header split over the smallest chained blocks.
        &[3, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 5, 0, 1, 0, 1, 2, 3, 4],
        // Limit 0: an empty body is fine, one byte is not.
        &[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 2, 0],
        &[0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9],
    ];
    for c in cases {
        fuzz::decode(c);
        fuzz::flush(c);
    }
}
