//! The ZMTP benchmark (issue 15, item 5): a reference server built on
//! libzmq itself ([`reference`]), one libzmq-based load generator
//! ([`load`]), the side-by-side run of that load against the reference and
//! `server-demo` ([`compare`]) and its REPORT.md section ([`section`]).
//!
//! Both servers speak the same command line (`--zmtp-router EP`,
//! `--zmtp-pair EP`, `--zmtp-xsub EP`, `--zmtp-xpub EP`, `--max-frame N`)
//! and print one `listening zmtp-KIND EP` line per endpoint, so the load
//! generator and the interop tests drive either.

pub mod compare;
pub mod endpoint;
pub mod load;
pub mod reference;
pub mod section;
