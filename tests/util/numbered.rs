//! Containers that print numbered lines (`TAG0000001 …`), and exact checks of what arrived:
//! a gap or a repeat is counted, not guessed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ByteReceiver, Container, TcpReceiver, count_newlines, docker_ok, lossy};

/// Padding that makes each numbered line about 100 bytes, as log lines go.
pub const PAD: &str = "lorem-ipsum-dolor-sit-amet-consectetur-adipiscing-elit-sed-do-eiusmod-tempor-incididunt-ut";

/// `docker exec`s a burst of lines `TAG0000001 …` numbered `from..=to` into the container's
/// stdout (a container whose main process sleeps).
pub fn emit(c: &Container, tag: &str, from: u64, to: u64) {
    let script = format!(
        "/bin/busybox seq {from} {to} | /bin/busybox awk '{{printf \"{tag}%07d {PAD}\\n\", $1}}' > /proc/1/fd/1"
    );
    docker_ok(&["exec", c.id(), "/bin/busybox", "sh", "-c", &script]);
}

/// A container script that prints `TAG0000001 …` up to `n`, pausing `pause_us` every `every`
/// lines (a steady stream), then sleeps.
pub fn writer_script(tag: &str, n: u64, every: u64, pause_us: u64) -> String {
    format!(
        "i=0; while [ $i -lt {n} ]; do i=$((i+1)); printf '{tag}%07d {PAD}\\n' $i; \
         if [ $((i % {every})) = 0 ]; then usleep {pause_us}; fi; done; sleep 3600"
    )
}

/// The numbers of the lines tagged `tag`, in arrival order.
pub fn numbers(rx: &TcpReceiver, tag: &str) -> Vec<u64> {
    rx.lines().iter().filter_map(|l| l.strip_prefix(tag)?.get(..7)?.parse().ok()).collect()
}

/// Waits until `rx` has a line numbered `n` tagged `tag`.
pub fn wait_for_number(rx: &TcpReceiver, tag: &str, n: u64, timeout: Duration) {
    let needle = format!("{tag}{n:07} ");
    let got = rx.wait_until(timeout, |b| lossy(b).contains(&needle));
    assert!(lossy(&got).contains(&needle), "line {n} of {tag} never arrived; got {} lines", count_newlines(&got));
}

/// Lines of 1..=n missing, and lines received more than once.
pub fn gaps_and_repeats(got: &[u64], n: u64) -> (Vec<u64>, u64) {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for &x in got {
        *seen.entry(x).or_default() += 1;
    }
    let missing = (1..=n).filter(|x| !seen.contains_key(x)).collect();
    let repeats = seen.values().map(|c| c - 1).sum();
    (missing, repeats)
}

/// Asserts that `got` is exactly 1..=n, saying briefly how it is not.
#[track_caller]
pub fn assert_once_in_order(got: &[u64], n: u64) {
    if got.iter().copied().eq(1..=n) {
        return;
    }
    let (missing, repeats) = gaps_and_repeats(got, n);
    let first_out_of_place = got.iter().zip(1..).find(|(g, want)| **g != *want).map(|(g, want)| (want, *g));
    panic!(
        "{} lines, {} missing (first: {:?}), {repeats} repeated, first out of place (position, got): {:?}",
        got.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        first_out_of_place
    );
}
