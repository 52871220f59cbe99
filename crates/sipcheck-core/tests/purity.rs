//! The core is sans-IO by construction: no async runtime or socket crate among its
//! dependencies, and clippy forbids the clock, sleeping, threads and std sockets.

const MANIFEST: &str = include_str!("../Cargo.toml");
const CLIPPY: &str = include_str!("../clippy.toml");

#[test]
fn no_runtime_or_socket_crates_among_dependencies() {
    let deps = MANIFEST
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap_or_default();
    for forbidden in [
        "tokio",
        "mio",
        "async-std",
        "smol",
        "socket2",
        "nix",
        "libc",
    ] {
        assert!(
            !deps.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("{forbidden} ")) || l.starts_with(&format!("{forbidden}="))
            }),
            "the core must not depend on {forbidden}"
        );
    }
}

#[test]
fn clippy_forbids_clock_sleep_threads_and_sockets() {
    for path in [
        "std::time::Instant::now",
        "std::time::SystemTime::now",
        "std::thread::sleep",
        "std::thread::spawn",
        "std::net::UdpSocket",
        "std::net::TcpStream",
        "std::net::TcpListener",
    ] {
        assert!(CLIPPY.contains(path), "clippy.toml does not forbid {path}");
    }
}
