//! Link flags for the luaspout binary (not for the library or the tests).
//!
//! On Linux with glibc, the binary's relative relocations are packed (`-z pack-relative-relocs`,
//! DT_RELR): a bitmap of a few KiB instead of about 460 KiB of `.rela.dyn` entries, which the
//! dynamic loader reads in full at every start, so all of it stayed resident for the life of the
//! process. Address randomisation is unchanged. The binary then needs glibc 2.36 or newer
//! (Debian 12, Ubuntu 22.04, RHEL 10); an older one refuses to start it with "version
//! `GLIBC_ABI_DT_RELR' not found", where it used to run from glibc 2.17 on.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
