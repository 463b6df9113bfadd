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
//!
//! The image's binary (x86_64, glibc linked in) also has the code its start-up and idle run
//! laid out together, in the order [`STARTUP_ORDER`] lists (`--symbol-ordering-file` of lld,
//! Rust's linker on x86_64 Linux since 1.90). The kernel maps a binary's code into a process in
//! 64 KiB runs around each page it touches, and start-up touches code all over the binary: laid
//! out this way, an idle luaspout holds 3.7 MiB instead of 7.8 (docs/performance.md, Memory).
//! The list names symbols as this rustc and these dependency versions mangle them; with another
//! rustc or another Cargo.lock, the names it misses are left where the linker puts them (the
//! build warns, `benches/startup/order.py` makes the list again).

use std::path::Path;
use std::process::Command;

/// The first glibc whose loader applies DT_RELR relocations.
const RELR_GLIBC: (u32, u32) = (2, 36);

/// The symbols of the start-up's code, in the order the image's binary lays them out; its
/// header names the rustc and the Cargo.lock it was made with.
const STARTUP_ORDER: &str = "benches/startup/symbols.order";

/// What a build that cannot use [`STARTUP_ORDER`] as it is tells the builder to do.
const REGENERATE: &str = "the start-up code is laid out only in part, so an idle luaspout holds more memory; \
                          make the list again with `python3 benches/startup/order.py`";

/// The first Rust whose default linker on x86_64-unknown-linux-gnu is lld.
const LLD_RUST: (u32, u32) = (1, 90);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={STARTUP_ORDER}");
    println!("cargo:rerun-if-changed=Cargo.lock");
    // A map of the link, for benches/startup/order.py, which reads what each address holds.
    println!("cargo:rerun-if-env-changed=LUASPOUT_LINK_MAP");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && gnu_linux && glibc_version().is_some_and(|v| v >= RELR_GLIBC) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let static_glibc = var("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static");
    // A linker of the builder's own choosing may not be lld, which alone knows the flag.
    let own_linker = var("CARGO_ENCODED_RUSTFLAGS").contains("linker") || !var("RUSTC_LINKER").is_empty();
    let image_build = native && gnu_linux && var("CARGO_CFG_TARGET_ARCH") == "x86_64" && static_glibc && !own_linker;
    // Asked only for that build: every other build (the tests') skips running the compiler.
    let rustc = if image_build { rustc_version(&var("RUSTC")) } else { None };
    if image_build && rustc.as_ref().is_some_and(|(_, v)| *v >= LLD_RUST) {
        let manifest_dir = var("CARGO_MANIFEST_DIR");
        let order = Path::new(&manifest_dir).join(STARTUP_ORDER);
        match std::fs::read_to_string(&order) {
            Ok(list) => {
                let lock = std::fs::read(Path::new(&manifest_dir).join("Cargo.lock")).unwrap_or_default();
                if let Some(stale) = stale_order(&list, rustc.as_ref().map_or("", |(line, _)| line), &lock) {
                    println!("cargo:warning={STARTUP_ORDER} {stale}: {REGENERATE}");
                }
                println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
                println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
            }
            Err(e) => println!("cargo:warning={STARTUP_ORDER}: {e}: {REGENERATE}"),
        }
    }
    if let Ok(map) = std::env::var("LUASPOUT_LINK_MAP") {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map}");
    }
}

/// This machine's glibc version, from `getconf GNU_LIBC_VERSION` (`glibc 2.36`).
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    Some((major.parse().ok()?, minor.split('.').next()?.parse().ok()?))
}

/// The compiler's `-V` line (`rustc 1.95.0 (59807616e 2026-04-14)`) and its version.
fn rustc_version(rustc: &str) -> Option<(String, (u32, u32))> {
    let out = Command::new(rustc).arg("-V").output().ok()?;
    let line = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let mut parts = line.strip_prefix("rustc ")?.split(['.', ' ']);
    let version = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    Some((line, version))
}

/// Why the ordering file (its text, `list`) does not fit this build, if it does not: it was
/// made with another rustc or another Cargo.lock (its `# rustc:` and `# Cargo.lock` lines).
fn stale_order(list: &str, rustc: &str, lock: &[u8]) -> Option<String> {
    let header = |key: &str| list.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim().to_string();
    let (made_rustc, made_lock) = (header("# rustc:"), header("# Cargo.lock fnv1a64:"));
    if made_rustc != rustc {
        Some(format!("was made with `{made_rustc}`, this build uses `{rustc}`"))
    } else if made_lock != format!("{:016x}", fnv1a64(lock)) {
        Some("was made with another Cargo.lock".into())
    } else {
        None
    }
}

/// FNV-1a, 64 bits: a fingerprint of Cargo.lock that benches/startup/order.py computes too.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
