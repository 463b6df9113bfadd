//! End-to-end tests of TLS routes: the real binary and real containers against a rustls
//! receiver and Debian's rsyslogd with GnuTLS, with certificates made at test time
//! ([`TestPki`]): exact bytes, a wrong CA refused and counted, mutual TLS, per-route options in
//! Lua, and a CA file replaced under a running config.

mod util;

use std::thread;
use std::time::Duration;

use util::tls::{ServerCert, TestPki, TlsReceiver};
use util::*;

/// A luaspout trusting only the test CA, routing the container named `name` to `uri`.
fn trusting_ca(pki: &TestPki, uri: String) -> LuaspoutBuilder {
    Luaspout::builder()
        .arg(uri)
        .env("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")
        .env("LOGSPOUT_TLS_CA_CERTS", pki.ca_pem().to_str().unwrap())
}

/// The value of `luaspout_route_tls_handshake_failures_total`, summed over routes.
fn handshake_failures(ls: &Luaspout) -> u64 {
    let (_, body) = ls.get("/metrics").expect("/metrics");
    lossy(body)
        .lines()
        .filter(|l| l.starts_with("luaspout_route_tls_handshake_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn syslog_over_tls_arrives_byte_exact_with_octet_framing() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let name = unique_name();
    let _ls = trusting_ca(&pki, format!("syslog+tls://{}?filter.name={name}", rx.addr()))
        .env("SYSLOG_TCP_FRAMING", "octet-counted")
        .start();
    let c = run_named(&name, &["--hostname", "tlshost"], "echo hello tls; echo second >&2; sleep 60");
    let pid = c.pid();
    let bytes = rx.wait_until(ARRIVE, |b| count_newlines(b) >= 2);
    let text = lossy(&bytes);
    let mut frames = Vec::new();
    let mut rest = text.as_str();
    while let Some((len, after)) = rest.split_once(' ') {
        let len: usize = len.parse().unwrap_or_else(|_| panic!("octet count expected: {rest:?}"));
        frames.push(mask_syslog_timestamp(after[..len].trim_end_matches('\n')));
        assert!(after[..len].ends_with('\n'), "the count includes the newline");
        rest = &after[len..];
    }
    frames.sort();
    assert_eq!(
        frames,
        [format!("<11>1 TS tlshost {name} {pid} - - second"), format!("<14>1 TS tlshost {name} {pid} - - hello tls"),]
    );
    assert_eq!(rx.stats().connections, 1, "one connection for both lines");
    assert_eq!(rx.server_names(), [None], "no SNI is sent for an IP address");
}

#[test]
fn a_server_signed_by_another_ca_is_refused_and_counted() {
    let pki = TestPki::new();
    let rx = TlsReceiver::builder(&pki).server_cert(&pki, ServerCert::Wrong).start();
    let name = unique_name();
    let ls = trusting_ca(&pki, format!("raw+tls://{}?filter.name={name}", rx.addr())).start();
    let _c = run_named(&name, &[], "echo secret; sleep 60");
    rx.wait_stats(ARRIVE, |s| s.failed_handshakes >= 2);
    assert!(rx.contents().is_empty(), "nothing is sent to an untrusted server");
    assert_eq!(rx.stats().handshakes, 0);
    assert!(handshake_failures(&ls) >= 2, "each refused handshake is counted");
    let stderr = ls.stderr();
    assert!(stderr.contains("TLS handshake failed") && stderr.contains("UnknownIssuer"), "{stderr}");
}

#[test]
fn mutual_tls_is_accepted_only_with_the_client_certificate() {
    let pki = TestPki::new();
    let rx = TlsReceiver::builder(&pki).require_client_cert().start();
    let (without, with) = (unique_name(), unique_name());
    let ls_without = trusting_ca(&pki, format!("raw+tls://{}?filter.name={without}", rx.addr())).start();
    let _ls_with = trusting_ca(&pki, format!("raw+tls://{}?filter.name={with}", rx.addr()))
        .env("LOGSPOUT_TLS_CLIENT_CERT", pki.client_cert_pem().to_str().unwrap())
        .env("LOGSPOUT_TLS_CLIENT_KEY", pki.client_key_pem().to_str().unwrap())
        .start();
    let _a = run_named(&without, &[], "echo from-anonymous; sleep 60");
    let _b = run_named(&with, &[], "echo from-client-cert; sleep 60");
    let lines = rx.wait_for_lines(1, ARRIVE);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(lines, ["from-client-cert"]);
    assert_eq!(rx.lines(), ["from-client-cert"], "the luaspout without a certificate never got through");
    assert!(rx.stats().client_certs >= 1);
    assert!(rx.stats().failed_handshakes >= 1);
    // TLS 1.3 reports a refused client certificate after the client's handshake: luaspout
    // waits for that verdict, so the line is never counted as sent into a refused connection.
    assert!(handshake_failures(&ls_without) >= 1);
    let stderr = ls_without.stderr();
    assert!(stderr.contains("TLS handshake failed") && stderr.contains("CertificateRequired"), "{stderr}");
    let (_, metrics) = ls_without.get("/metrics").unwrap();
    assert!(
        lossy(metrics).lines().any(|l| l.contains(r#"outcome="sent""#) && l.ends_with(" 0")),
        "nothing counted as sent"
    );
}

#[test]
fn per_route_tls_options_in_lua_trust_a_ca_and_name_the_server() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let name = unique_name();
    let _ls = Luaspout::builder()
        .env("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")
        .config(&format!(
            r#"
route {{
  to = "tls://{addr}",
  match = {{ name = "{name}" }},
  tls = {{ ca = {{ "{bundle}" }}, server_name = "logs.test", system_roots = false }},
}}
"#,
            addr = rx.addr(),
            bundle = pki.ca_bundle_pem().display()
        ))
        .start();
    let _c = run_named(&name, &[], "echo via-lua-tls; sleep 60");
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["via-lua-tls"]);
    assert_eq!(rx.server_names(), [Some("logs.test".to_string())], "SNI carries server_name");
}

#[test]
fn a_replaced_ca_file_is_picked_up_without_a_restart_and_queued_lines_follow() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(pki.wrong_ca_pem(), &ca).unwrap();
    let name = unique_name();
    let mut ls = Luaspout::builder()
        .env("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")
        .config(&format!(
            "route {{ to = \"tls://{}\", match = {{ name = \"{name}\" }}, tls = {{ ca = \"{}\" }} }}\n",
            rx.addr(),
            ca.display()
        ))
        .start();
    let _c = run_named(&name, &[], "echo queued-1; echo queued-2; sleep 60");
    rx.wait_stats(ARRIVE, |s| s.failed_handshakes >= 1);
    assert!(rx.contents().is_empty());
    // A renewed trust anchor, written the way tools do: a new file renamed over the old one.
    let tmp = dir.path().join("ca.pem.new");
    std::fs::copy(pki.ca_pem(), &tmp).unwrap();
    std::fs::rename(&tmp, &ca).unwrap();
    assert_eq!(rx.wait_for_lines(2, ARRIVE), ["queued-1", "queued-2"]);
    ls.assert_running();
    assert!(ls.stderr().contains("config reloaded"), "{}", ls.stderr());
}

#[test]
fn rsyslog_with_gnutls_parses_what_luaspout_sends() {
    let pki = TestPki::new();
    let rs = Rsyslogd::start_tls(&pki, true);
    let name = unique_name();
    let _ls = trusting_ca(&pki, format!("syslog+tls://{}?filter.name={name}", rs.addr()))
        .env("LOGSPOUT_TLS_CLIENT_CERT", pki.client_cert_pem().to_str().unwrap())
        .env("LOGSPOUT_TLS_CLIENT_KEY", pki.client_key_pem().to_str().unwrap())
        .env("SYSLOG_TCP_FRAMING", "octet-counted")
        .start();
    let c = run_named(&name, &["--hostname", "myhost"], "echo hello rsyslog over tls; sleep 60");
    let pid = c.pid();
    let lines = rs.wait_for_lines(1, ARRIVE);
    assert_eq!(lines, [format!("HOST=myhost TAG={name}[{pid}] APP={name} PROCID={pid} MSG=hello rsyslog over tls")]);
}

/// Issue 15: an X.509 v1 client certificate (no extensions; rcgen cannot make one, so it is a
/// committed fixture, `tests/fixtures/v1-client/`) works for mutual TLS: rsyslog requires and
/// verifies it, and every line arrives.
#[test]
fn mutual_tls_with_a_v1_client_certificate_delivers_every_line() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-client");
    let pki = TestPki::new();
    let rs = Rsyslogd::start_tls_trusting(&pki, true, Some(&fixture.join("ca.pem")));
    let name = unique_name();
    let ls = trusting_ca(&pki, format!("syslog+tls://{}?filter.name={name}", rs.addr()))
        .env("LOGSPOUT_TLS_CLIENT_CERT", fixture.join("client.pem").to_str().unwrap())
        .env("LOGSPOUT_TLS_CLIENT_KEY", fixture.join("client.key").to_str().unwrap())
        .env("SYSLOG_TCP_FRAMING", "octet-counted")
        .start();
    let c = run_named(&name, &["--hostname", "v1host"], "for i in $(seq 1 50); do echo v1-line-$i; done; sleep 60");
    let pid = c.pid();
    let lines = rs.wait_for_lines(50, ARRIVE);
    let expected: Vec<String> =
        (1..=50).map(|i| format!("HOST=v1host TAG={name}[{pid}] APP={name} PROCID={pid} MSG=v1-line-{i}")).collect();
    assert_eq!(lines, expected);
    assert!(ls.stderr().contains("cannot check the client certificate against its key"), "{}", ls.stderr());
}

#[test]
fn the_papertrail_example_speaks_tls_to_its_destination() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/papertrail.lua")).unwrap();
    let name = unique_name();
    let _ls = Luaspout::builder()
        .config(&text)
        .env("PAPERTRAIL_URL", &format!("syslog+tls://{}?filter.name={name}", rx.addr()))
        .env("LOGSPOUT_TLS_CA_CERTS", pki.ca_pem().to_str().unwrap())
        .start();
    let c = run_named(&name, &["--hostname", "pt"], "echo to papertrail; echo '   '; sleep 60");
    let pid = c.pid();
    rx.wait_for_lines(1, ARRIVE);
    thread::sleep(SETTLE);
    let lines: Vec<String> = rx.lines().iter().map(|l| mask_syslog_timestamp(l)).collect();
    assert_eq!(lines, [format!("<14>1 TS pt {name} {pid} - - to papertrail")], "the blank line is dropped");
}

#[test]
fn an_unreadable_ca_file_stops_startup_with_its_name() {
    let out = std::process::Command::new(luaspout_bin())
        .env_clear()
        .env("LOGSPOUT_TLS_CA_CERTS", "/nonexistent/ca.pem")
        .env("HTTP_BIND_ADDRESS", "127.0.0.1")
        .env("PORT", free_port().to_string())
        .arg("raw+tls://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/ca.pem") && stderr.contains("LOGSPOUT_TLS_CA_CERTS"), "{stderr}");
}
