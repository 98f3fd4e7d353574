//! The demo server and its load generator: `allocators` + `netbuf` composed
//! into a real TCP / Unix-socket network path where every strategy can be
//! swapped from the command line.
//!
//! ```no_run
//! use server_demo::config::{Listen, StrategyArgs};
//! use server_demo::server::Server;
//!
//! let server = Server::start(
//!     Listen { tcp: Some("127.0.0.1:0".parse().unwrap()), unix: None },
//!     StrategyArgs::default(),
//! )
//! .unwrap();
//! println!("listening tcp {}", server.tcp_addr().unwrap());
//! let leaks = server.shutdown();
//! assert!(leaks.is_clean());
//! ```

pub mod config;
pub mod load;
pub mod main_job;
pub mod protocol;
pub mod server;
pub mod soak;
pub mod sync;
pub mod zmtp;
