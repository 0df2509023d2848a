use super::*;

fn state(pools: &str) -> State {
    let text = format!(
        "[[route]]\nname = \"api\"\nhost = [\"a.test\"]\npath_prefix = \"/api\"\npool = \"api\"\n\
         [[route]]\nname = \"hello\"\nrespond = {{ status = 200 }}\n\
         [https]\nlisten = []\n[http]\nlisten = []\n{pools}"
    );
    let v = crate::config::load_str(
        crate::config::Source::new(std::path::Path::new("t.toml"), text),
        std::path::Path::new("."),
    )
    .unwrap();
    State::build(&v, &crate::telemetry::Telemetry::new()).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn snapshot_lists_routes_pools_and_operator_states() {
    let st = state(
        "[[pool]]\nname = \"web\"\n[[pool.server]]\naddress = \"127.0.0.1:1\"\nweight = 3\n\
         [[pool.server]]\naddress = \"127.0.0.1:2\"\n\
         [[pool]]\nname = \"api\"\n[[pool.server]]\naddress = \"127.0.0.1:3\"\n",
    );
    let admin = Admin::new("t.toml");
    admin.adopt(&st);
    admin.set_state("web", addr(2), AdminState::Maint);
    admin.set_state("api", addr(3), AdminState::Drain);
    let metrics = st.obs.metrics.clone();
    metrics.route("api").observe(200, std::time::Duration::ZERO);
    metrics.route("api").observe(502, std::time::Duration::ZERO);
    metrics.sink("udp").dropped_oversize.inc_by(4);
    let v = snapshot(&metrics, &st, &admin);

    let routes = v["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["hosts"], json!(["a.test"]));
    assert_eq!(routes[0]["path_prefix"], "/api");
    assert_eq!(routes[0]["pool"], "api");
    assert_eq!(
        (routes[0]["requests"].as_u64(), routes[0]["errors"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(routes[1]["target"], "respond 200");

    let pools = v["pools"].as_array().unwrap();
    let names: Vec<&str> = pools.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "web"]);
    let web = &pools[1]["servers"];
    assert_eq!(web[0]["address"], "127.0.0.1:1");
    assert_eq!(web[0]["state"], "up", "no health checks: in rotation");
    assert_eq!(web[0]["weight"], 3);
    assert_eq!(web[1]["state"], "maintenance");
    assert_eq!(web[1]["admin"], "maint");
    assert_eq!(pools[0]["servers"][0]["state"], "draining");
    assert_eq!(pools[1]["servers_up"], 1);

    assert_eq!(v["access_logs"][0]["name"], "udp");
    assert_eq!(v["access_logs"][0]["dropped"], 4);
    assert_eq!(v["vrrp"], json!([]));
    assert_eq!(v["edge"]["generation"], 1);
}

#[test]
fn server_state_puts_the_operator_first() {
    use AdminState::*;
    assert_eq!(
        server_state(Maint, Some(TargetState::Down), false),
        "maintenance"
    );
    assert_eq!(server_state(Drain, Some(TargetState::Up), true), "draining");
    assert_eq!(
        server_state(Ready, Some(TargetState::Ejected), false),
        "ejected"
    );
    assert_eq!(server_state(Ready, Some(TargetState::Down), false), "down");
    assert_eq!(server_state(Ready, None, true), "up");
}

#[test]
fn the_page_is_self_contained() {
    // Nothing is fetched from elsewhere: no external script, style or image.
    for needle in ["src=\"http", "href=\"http", "url(http", "//cdn", "@import"] {
        assert!(!PAGE.contains(needle), "{needle} in the page");
    }
    assert!(PAGE.contains("status.json"));
    assert!(PAGE.contains("name=\"viewport\""));
}
