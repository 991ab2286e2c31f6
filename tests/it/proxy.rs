//! Behind a reverse proxy: forwarding headers are believed only from trusted peers; a trusted
//! chain resolves to the first untrusted hop; the handler sees the resolved client and scheme.

use tokio_tungstenite::tungstenite::Message;
use wshd_tests::*;

fn probe_server(proxy: &str) -> ServerProcess {
    ServerProcess::start_with(|dir| drop(dir.install("fixture_probe", "handlers/probe_wsh.so")), "", proxy)
}

/// What the probe reports about the connection (`… peer=<ip> secure=<bool>`).
async fn info(server: &ServerProcess, headers: &[(&str, &str)]) -> String {
    let mut client = connect_with(&server.ws_url("/probe"), headers).await.unwrap_or_else(|e| panic!("{e}"));
    let reply = round_trip(&mut client, Message::text("info")).await;
    reply.to_text().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let spoof = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=203.0.113.10;proto=https"),
    ];
    // Nobody trusted (the default).
    let server = probe_server("");
    let seen = info(&server, &spoof).await;
    assert!(seen.ends_with("peer=127.0.0.1 secure=false"), "{seen}");
    // Trusted proxies elsewhere: the loopback peer is still not one of them.
    let server = probe_server("[proxy]\ntrusted = [\"10.0.0.0/8\", \"192.0.2.1\"]\n");
    let seen = info(&server, &spoof).await;
    assert!(seen.ends_with("peer=127.0.0.1 secure=false"), "{seen}");
}

#[tokio::test]
async fn a_trusted_x_forwarded_for_chain_resolves_to_the_first_untrusted_hop() {
    let server = probe_server("[proxy]\ntrusted = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n");
    // The client spoofs a first entry; its own address was appended by a trusted edge proxy
    // (10.1.2.3), which connected to the proxy that connects to us.
    let seen = info(
        &server,
        &[("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.2.3"), ("X-Forwarded-Proto", "https")],
    )
    .await;
    assert!(seen.ends_with("peer=203.0.113.9 secure=true"), "{seen}");
    // No forwarding headers: the proxy itself is the client.
    let seen = info(&server, &[]).await;
    assert!(seen.ends_with("peer=127.0.0.1 secure=false"), "{seen}");
    // The handshake log names the resolved client.
    server
        .wait_log_where(|l| l.contains("handshake accepted") && l.contains("peer=203.0.113.9"), WAIT)
        .unwrap_or_else(|| panic!("{}", server.logs()));
}

#[tokio::test]
async fn a_trusted_rfc7239_forwarded_header_resolves_quoted_ipv6_and_proto() {
    let server = probe_server("[proxy]\ntrusted = [\"127.0.0.1\"]\nclient_ip_header = \"forwarded\"\n");
    let seen = info(
        &server,
        &[("Forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=example.com, for=127.0.0.1")],
    )
    .await;
    assert!(seen.ends_with("peer=2001:db8:cafe::17 secure=true"), "{seen}");
    // In this mode X-Forwarded-For is not consulted.
    let seen = info(&server, &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert!(seen.ends_with("peer=127.0.0.1 secure=false"), "{seen}");
    // An obfuscated client: its address stays unknown (the proxy's), its scheme is kept.
    let seen = info(&server, &[("Forwarded", "for=_hidden;proto=https")]).await;
    assert!(seen.ends_with("peer=127.0.0.1 secure=true"), "{seen}");
}
