//! The static document root on the WebSocket port.

use wshd_tests::*;

async fn get(server: &ServerProcess, target: &str) -> RawResponse {
    raw_http(server.addr, &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
        .await
}

#[tokio::test]
async fn no_document_root_means_404_for_pages() {
    let server = ServerProcess::start(|dir| drop(dir.write("handlers/index.html", "x")), "");
    assert_eq!(get(&server, "/index.html").await.status, 404);
}

#[tokio::test]
async fn pages_are_served_with_types_and_traversal_is_refused() {
    let dir = TempDir::new();
    dir.install("echo_wsh", "handlers/libecho_wsh.so");
    dir.write("www/index.html", "<h1>hello</h1>");
    dir.write("www/app.js", "console.log(1)");
    dir.write("www/sub/page.txt", "sub page");
    dir.write("secret.txt", "outside the root");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), dir.path().join("www/link.txt"))
        .unwrap_or_else(|e| panic!("symlink: {e}"));
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\ndocument_root = \"www\"\n[handlers]\ndir = \"handlers\"\n\
                  [[route]]\npath = \"/\"\nhandler = \"/echo\"\n";
    dir.write("server.toml", config);
    let server = ServerProcess::spawn(&["-c", "server.toml"], dir);

    let index = get(&server, "/").await;
    assert_eq!(index.status, 200, "the page wins over the `/` alias for a plain GET");
    assert_eq!(index.text(), "<h1>hello</h1>");
    assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        raw_http(server.addr, &handshake_request("/", "")).await.status,
        101,
        "an upgrade to `/` is the alias"
    );

    let js = get(&server, "/app.js?v=1").await;
    assert_eq!((js.status, js.header("content-type")), (200, Some("text/javascript; charset=utf-8")));
    let head = raw_http(server.addr, "HEAD /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!((head.status, head.header("content-length")), (200, Some("14")));
    assert_eq!(get(&server, "/sub/page.txt").await.text(), "sub page");
    let redirect = get(&server, "/sub").await;
    assert_eq!((redirect.status, redirect.header("location")), (301, Some("/sub/")));
    let listing = get(&server, "/sub/").await;
    assert!(listing.status == 200 && listing.text().contains("page.txt"), "{listing:?}");
    assert_eq!(get(&server, "/missing.html").await.status, 404);

    for attack in
        ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/..%2f..%2fsecret.txt", "/sub/%2e%2e/%2e%2e/secret.txt"]
    {
        let resp = get(&server, attack).await;
        assert!(resp.status == 403 || resp.status == 400, "{attack}: {resp:?}");
        assert!(!resp.text().contains("outside the root"), "{attack} leaked the file");
    }
    let link = get(&server, "/link.txt").await;
    assert_eq!(link.status, 403, "a symlink leaving the root is refused");
    assert!(!link.text().contains("outside the root"));
    let post = raw_http(
        server.addr,
        "POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(post.status, 405);
}
