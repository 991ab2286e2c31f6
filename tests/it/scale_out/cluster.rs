//! Three wshd nodes and one Redis behind a real nginx (`config/nginx/wshd-cluster.conf`,
//! Debian's `/usr/sbin/nginx`; `.ci/run` installs it): clients connecting through nginx land
//! on different nodes and chat; a node killed with SIGKILL loses its clients, which
//! reconnect through nginx to another node with `&since=` and get what they missed.

use wshd_tests::nginx::Nginx;

use super::*;

/// nginx with the cluster example, its upstream set to `nodes`.
fn start_nginx(nodes: &[&ServerProcess]) -> Nginx {
    let upstream = ["127.0.0.1:9998", "127.0.0.1:9997", "127.0.0.1:9996"];
    let edits: Vec<(&str, String)> =
        upstream.into_iter().zip(nodes).map(|(from, n)| (from, n.addr.to_string())).collect();
    Nginx::start("wshd-cluster.conf", &edits)
}

/// Connects to `url` through nginx; the client and the index of the node that served it
/// (the one whose count of accepted handshakes went up).
async fn connect_via(nodes: &[&ServerProcess], url: &str) -> (Client, usize) {
    let before: Vec<usize> = nodes.iter().map(|n| n.count_log("handshake accepted")).collect();
    let client = connect(url).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let now: Vec<usize> = nodes.iter().map(|n| n.count_log("handshake accepted")).collect();
        if let Some(index) = (0..nodes.len()).find(|&i| now[i] > before[i]) {
            return (client, index);
        }
        assert!(Instant::now() < deadline, "no node logged the handshake of {url}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_nginx_chat_across_three_nodes_and_rejoin_elsewhere_after_a_sigkill() {
    let redis = Redis::start();
    let nodes = [
        chat_node(&redis, "workers = 0"),
        chat_node(&redis, "workers = 0"),
        chat_node(&redis, "workers = 0"),
    ];
    let refs: Vec<&ServerProcess> = nodes.iter().collect();
    let nginx = start_nginx(&refs);
    let (mut clients, mut homes) = (Vec::new(), Vec::new());
    for nick in ["ann", "ben", "cat"] {
        let (client, home) = connect_via(&refs, &nginx.url(&format!("/chat?room=hall&nick={nick}"))).await;
        clients.push(client);
        homes.push(home);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("through nginx: ann, ben, cat served by nodes {homes:?}");
    let mut distinct = homes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "least_conn spreads three clients over three nodes: {homes:?}");
    clients[0].send(Message::text("hello all")).await.expect("send");
    for (who, client) in ["ann", "ben", "cat"].iter().zip(clients.iter_mut()) {
        let said = chat_event(who, client).await;
        assert_eq!(said["text"], "hello all");
    }
    let last_seen = chat_event_id(&mut clients, 1).await;
    // Kill ben's node; ann says more; ben reconnects through nginx with since.
    let ben_home = homes[1];
    nodes[ben_home].signal("KILL");
    drop(clients.remove(1));
    clients[0].send(Message::text("ben, you missed this")).await.expect("send");
    let mut said = chat_event("ann", &mut clients[0]).await;
    if said["type"] == "gone" {
        said = chat_event("ann", &mut clients[0]).await; // ben's will may come first
    }
    assert_eq!(said["text"], "ben, you missed this");
    let url = nginx.url(&format!("/chat?room=hall&nick=ben2&since={last_seen}"));
    let live: Vec<usize> = (0..3).filter(|&i| i != ben_home).collect();
    let alive: Vec<&ServerProcess> = live.iter().map(|&i| refs[i]).collect();
    let (mut ben, new_home) = connect_via(&alive, &url).await;
    assert_eq!(chat_event("ben2", &mut ben).await["text"], "ben, you missed this");
    assert_eq!(chat_event("ben2", &mut ben).await, serde_json::json!({"type": "recovered", "ok": true}));
    println!("ben's node {ben_home} was killed; ben rejoined through nginx on live node {}", live[new_home]);
}

/// Says something as the client at `index`, and returns the id of that message as every
/// client saw it (they all read it).
async fn chat_event_id(clients: &mut [Client], index: usize) -> String {
    clients[index].send(Message::text("a marker")).await.expect("send");
    let mut id = String::new();
    for client in clients.iter_mut() {
        let said = chat_event("marker", client).await;
        assert_eq!(said["text"], "a marker");
        id = said["id"].as_str().expect("an id").to_owned();
    }
    id
}
