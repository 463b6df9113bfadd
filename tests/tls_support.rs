//! Tests of the TLS test-support code in `tests/util/tls.rs` itself (not of luaspout): the
//! generated PKI is accepted and rejected where it should be, [`TlsReceiver`] records what a
//! rustls client sends and counts failed handshakes, mutual TLS refuses a client without a
//! certificate, and the TLS rsyslogd parses newline-terminated and octet-counted messages.
//! When a luaspout TLS test fails, these say whether the harness or luaspout is to blame.
//!
//! Needs no Docker; the rsyslog tests need Debian's `rsyslog` and `rsyslog-gnutls`.

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::tls::*;
use util::*;

/// How long to wait for a counter that should change promptly.
const QUICK: Duration = Duration::from_secs(10);

#[test]
fn receiver_records_bytes_from_a_client_trusting_the_ca() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let config = tls_client_config(&pki.ca_pem(), None);
    tls_send(rx.port(), "127.0.0.1", config.clone(), b"first line\n").expect("send over TLS (IP SAN)");
    tls_send(rx.port(), "localhost", config.clone(), b"second ").expect("send over TLS (DNS SAN localhost)");
    tls_send(rx.port(), "logs.test", config, b"line\n").expect("send over TLS (DNS SAN logs.test)");

    assert_eq!(rx.wait_for_lines(2, ARRIVE), ["first line", "second line"]);
    let stats = rx.wait_stats(QUICK, |s| s.handshakes == 3);
    assert_eq!(stats, TlsStats { connections: 3, handshakes: 3, failed_handshakes: 0, client_certs: 0 });
    assert!(!rx.client_cert_presented());
    // rustls sends no SNI for an IP address.
    assert_eq!(rx.server_names(), [None, Some("localhost".to_string()), Some("logs.test".to_string())]);
}

#[test]
fn ca_bundle_with_several_certificates_is_read_whole() {
    let pki = TestPki::new();
    assert_eq!(util::tls::load_certs(&pki.ca_bundle_pem()).len(), 2);
    // The right CA is the second certificate of the bundle.
    let rx = TlsReceiver::start(&pki);
    tls_send(rx.port(), "127.0.0.1", tls_client_config(&pki.ca_bundle_pem(), None), b"via bundle\n")
        .expect("a client trusting the bundle accepts the right server certificate");
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["via bundle"]);
    // ...and the wrong CA's server certificate, signed by the bundle's first certificate.
    let wrong = TlsReceiver::builder(&pki).server_cert(&pki, ServerCert::Wrong).start();
    tls_send(wrong.port(), "localhost", tls_client_config(&pki.ca_bundle_pem(), None), b"wrong ca\n")
        .expect("a client trusting the bundle accepts the wrong CA's server certificate too");
    assert_eq!(wrong.wait_for_lines(1, ARRIVE), ["wrong ca"]);
}

#[test]
fn client_trusting_only_the_wrong_ca_fails_the_handshake() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let err = tls_send(rx.port(), "127.0.0.1", tls_client_config(&pki.wrong_ca_pem(), None), b"never\n")
        .expect_err("the server certificate is not signed by the wrong CA");
    assert!(err.to_string().contains("UnknownIssuer"), "unexpected client error: {err}");

    let stats = rx.wait_stats(QUICK, |s| s.failed_handshakes == 1);
    assert_eq!(stats, TlsStats { connections: 1, handshakes: 0, failed_handshakes: 1, client_certs: 0 });
    let errors = rx.handshake_errors();
    assert!(errors[0].contains("UnknownCA"), "unexpected server-side error: {errors:?}");
    assert_eq!(rx.contents(), b"");
}

#[test]
fn receiver_with_the_wrong_certificate_is_rejected_by_a_client_trusting_the_ca() {
    let pki = TestPki::new();
    let rx = TlsReceiver::builder(&pki).server_cert(&pki, ServerCert::Wrong).start();
    let err = tls_send(rx.port(), "127.0.0.1", tls_client_config(&pki.ca_pem(), None), b"never\n")
        .expect_err("the wrong server certificate is not signed by the CA");
    assert!(err.to_string().contains("UnknownIssuer"), "unexpected client error: {err}");
    assert_eq!(rx.wait_stats(QUICK, |s| s.failed_handshakes == 1).failed_handshakes, 1);
}

#[test]
fn server_certificate_does_not_match_another_name() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    let err = tls_send(rx.port(), "other.test", tls_client_config(&pki.ca_pem(), None), b"never\n")
        .expect_err("other.test is not a SAN of the server certificate");
    assert!(err.to_string().contains("not valid for name"), "unexpected client error: {err}");
    assert_eq!(rx.wait_stats(QUICK, |s| s.failed_handshakes == 1).failed_handshakes, 1);
}

#[test]
fn mutual_tls_receiver_refuses_a_client_without_a_certificate() {
    let pki = TestPki::new();
    let rx = TlsReceiver::builder(&pki).require_client_cert().start();
    // TLS 1.3: the client's handshake completes before the server checks; the refusal is an
    // alert on the client's next read, which tls_send reports.
    let err = tls_send(rx.port(), "127.0.0.1", tls_client_config(&pki.ca_pem(), None), b"no cert\n")
        .expect_err("the server requires a client certificate");
    assert!(err.to_string().contains("CertificateRequired"), "unexpected client error: {err}");
    let stats = rx.wait_stats(QUICK, |s| s.failed_handshakes == 1);
    assert_eq!(stats, TlsStats { connections: 1, handshakes: 0, failed_handshakes: 1, client_certs: 0 });
    assert!(rx.handshake_errors()[0].contains("peer sent no certificates"), "{:?}", rx.handshake_errors());
    assert_eq!(rx.contents(), b"", "nothing from an unauthenticated client may be recorded");
}

#[test]
fn mutual_tls_receiver_accepts_a_client_with_a_certificate() {
    let pki = TestPki::new();
    let rx = TlsReceiver::builder(&pki).require_client_cert().start();
    let config = tls_client_config(&pki.ca_pem(), Some((&pki.client_cert_pem(), &pki.client_key_pem())));
    tls_send(rx.port(), "localhost", config, b"with cert\n").expect("send with a client certificate");
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["with cert"]);
    let stats = rx.wait_stats(QUICK, |s| s.handshakes == 1);
    assert_eq!(stats, TlsStats { connections: 1, handshakes: 1, failed_handshakes: 0, client_certs: 1 });
    assert!(rx.client_cert_presented());
}

#[test]
fn mutual_tls_refusal_surfaces_in_the_handshake_with_tls12() {
    let pki = TestPki::new();
    let rx = TlsReceiver::builder(&pki).require_client_cert().tls12_only().start();
    let err = tls_connect(rx.port(), "127.0.0.1", tls_client_config(&pki.ca_pem(), None))
        .expect_err("with TLS 1.2 the client's handshake itself fails");
    assert!(err.to_string().contains("CertificateRequired"), "unexpected client error: {err}");
    assert_eq!(rx.wait_stats(QUICK, |s| s.failed_handshakes == 1).failed_handshakes, 1);

    let config = tls_client_config(&pki.ca_pem(), Some((&pki.client_cert_pem(), &pki.client_key_pem())));
    let mut tls = tls_connect(rx.port(), "127.0.0.1", config).expect("TLS 1.2 with a client certificate");
    assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    tls.write_all(b"tls 1.2\n").unwrap();
    tls.flush().unwrap();
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["tls 1.2"]);
    assert!(rx.client_cert_presented());
}

#[test]
fn receiver_counts_a_plain_tcp_connection_as_a_failed_handshake_without_panicking() {
    let pki = TestPki::new();
    let rx = TlsReceiver::start(&pki);
    {
        let mut plain = std::net::TcpStream::connect(rx.addr()).unwrap();
        plain.write_all(b"<14>1 - - - - - - not tls\n").unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer); // an alert, then close
    }
    assert_eq!(rx.wait_stats(QUICK, |s| s.failed_handshakes == 1).failed_handshakes, 1);
    // The receiver still works after that.
    tls_send(rx.port(), "127.0.0.1", tls_client_config(&pki.ca_pem(), None), b"after\n").unwrap();
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["after"]);
    assert_eq!(rx.stats(), TlsStats { connections: 2, handshakes: 1, failed_handshakes: 1, client_certs: 0 });
}

#[test]
fn receiver_started_late_on_a_chosen_port() {
    let pki = TestPki::new();
    let port = free_port();
    let config = tls_client_config(&pki.ca_pem(), None);
    assert!(tls_send(port, "127.0.0.1", config.clone(), b"too early\n").is_err());
    let rx = TlsReceiver::builder(&pki).port(port).start();
    assert_eq!(rx.port(), port);
    tls_send(port, "127.0.0.1", config, b"on time\n").unwrap();
    assert_eq!(rx.wait_for_lines(1, ARRIVE), ["on time"]);
}

const LINE_5424: &[u8] = b"<14>1 2024-01-01T00:00:00Z myhost app 42 - - hello tls\n";
const OCTET_5424: &str = "<14>1 2024-01-01T00:00:00Z myhost app 43 - - octet counted tls";

#[test]
fn rsyslogd_tls_parses_newline_and_octet_counted_messages() {
    let pki = TestPki::new();
    let rsyslogd = Rsyslogd::start_tls(&pki, false);
    let config = tls_client_config(&pki.ca_pem(), None);
    tls_send(rsyslogd.port(), "127.0.0.1", config.clone(), LINE_5424).expect("send a newline-terminated line");
    let framed = format!("{} {OCTET_5424}", OCTET_5424.len());
    tls_send(rsyslogd.port(), "logs.test", config, framed.as_bytes()).expect("send an octet-counted message");
    assert_eq!(
        rsyslogd.wait_for_lines(2, ARRIVE),
        [
            "HOST=myhost TAG=app[42] APP=app PROCID=42 MSG=hello tls",
            "HOST=myhost TAG=app[43] APP=app PROCID=43 MSG=octet counted tls",
        ]
    );
    std::thread::sleep(SETTLE);
    assert_eq!(rsyslogd.lines().len(), 2, "readiness probes and closes must not produce lines");
}

#[test]
fn rsyslogd_tls_several_messages_on_one_connection() {
    let pki = TestPki::new();
    let rsyslogd = Rsyslogd::start_tls(&pki, false);
    let framed = format!("{} {OCTET_5424}", OCTET_5424.len());
    let mut data = LINE_5424.to_vec();
    data.extend_from_slice(framed.as_bytes());
    data.extend_from_slice(b"<13>1 2024-01-01T00:00:01Z otherhost tool - - - third\n");
    tls_send(rsyslogd.port(), "localhost", tls_client_config(&pki.ca_pem(), None), &data).unwrap();
    assert_eq!(
        rsyslogd.wait_for_lines(3, ARRIVE),
        [
            "HOST=myhost TAG=app[42] APP=app PROCID=42 MSG=hello tls",
            "HOST=myhost TAG=app[43] APP=app PROCID=43 MSG=octet counted tls",
            "HOST=otherhost TAG=tool APP=tool PROCID=- MSG=third",
        ]
    );
}

#[test]
fn rsyslogd_tls_rejects_a_client_trusting_the_wrong_ca() {
    let pki = TestPki::new();
    let rsyslogd = Rsyslogd::start_tls(&pki, false);
    let err = tls_send(rsyslogd.port(), "127.0.0.1", tls_client_config(&pki.wrong_ca_pem(), None), LINE_5424)
        .expect_err("rsyslogd's certificate is not signed by the wrong CA");
    assert!(err.to_string().contains("UnknownIssuer"), "unexpected client error: {err}");
    std::thread::sleep(SETTLE);
    assert_eq!(rsyslogd.lines(), Vec::<String>::new());
}

#[test]
fn rsyslogd_tls_with_client_certificates() {
    let pki = TestPki::new();
    let rsyslogd = Rsyslogd::start_tls(&pki, true);
    // No client certificate: rsyslogd (GnuTLS, TLS 1.3) closes the connection after the
    // handshake without an alert, so the client sees `Ok` or a broken pipe, depending on timing;
    // only the missing line shows the refusal.
    let _ =
        tls_send(rsyslogd.port(), "127.0.0.1", tls_client_config(&pki.ca_pem(), None), b"<14>1 - h a - - - no cert\n");
    let config = tls_client_config(&pki.ca_pem(), Some((&pki.client_cert_pem(), &pki.client_key_pem())));
    tls_send(rsyslogd.port(), "127.0.0.1", config, LINE_5424).expect("send with a client certificate");
    assert_eq!(rsyslogd.wait_for_lines(1, ARRIVE), ["HOST=myhost TAG=app[42] APP=app PROCID=42 MSG=hello tls"]);
    std::thread::sleep(SETTLE);
    assert_eq!(rsyslogd.lines().len(), 1, "the message without a client certificate must not be logged");
}
