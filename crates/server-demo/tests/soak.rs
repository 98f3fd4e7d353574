//! A short soak profile (~10 s): the server in-process under clients that
//! mix valid traffic with faults, demo protocol and ZMTP side by side;
//! every check of `server_demo::soak` must hold (scripts/soak.sh runs the 60-second profile, release build).

use server_demo::soak::{SoakArgs, run};

// The allocator the features select (the CI runs this test under each),
// as the `server-demo` binary does: the soak's after-load check asks it
// to give memory back.
allocators::global_allocator!();

#[test]
fn short_soak_profile_passes_every_check() {
    let args = SoakArgs {
        seconds: 8,
        clients: 10,
        seed: Some(0x50a4),
        ..SoakArgs::default()
    };
    let report = run(&args);
    println!("{report}");
    assert!(report.passed(), "soak failed:\n{report}");
    assert!(report.totals.connections > 10);
    assert_eq!(report.leaks, 0);
    let z = &report.totals.zmtp;
    assert!(z.connections > 5, "{report}");
    assert!(z.echo_answered > 0 && z.deliveries > 0, "{report}");
}
