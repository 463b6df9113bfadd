//! Link flags for the luaspout binary (not for the library or the tests).
//!
//! On Linux with glibc 2.36 or newer, the binary's relative relocations are packed
//! (`-z pack-relative-relocs`, DT_RELR): a bitmap of a few KiB instead of about 460 KiB of
//! `.rela.dyn` entries, which the dynamic loader reads in full at every start, so all of it
//! stayed resident (docs/performance.md, Memory). Address randomisation is unchanged. A binary
//! linked this way needs glibc 2.36 to start, so the flag is given only when the build machine's
//! glibc has it and the binary is built for that machine (not cross-compiled): an older glibc
//! gets the binary it always got. The same holds for the static-pie binary the image ships
//! (`+crt-static`, Dockerfile): it relocates itself at start with the code of the glibc it was
//! linked with, the build machine's, so the check is the same and the binary then starts
//! anywhere.

use std::process::Command;

/// The first glibc whose loader applies DT_RELR relocations.
const RELR_GLIBC: (u32, u32) = (2, 36);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && gnu_linux && glibc_version().is_some_and(|v| v >= RELR_GLIBC) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// This machine's glibc version, from `getconf GNU_LIBC_VERSION` (`glibc 2.36`).
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
}
