use std::path::Path;

use super::*;

fn check(text: &str) -> Result<Validated, ConfigErrors> {
    load_str(
        Source::new(Path::new("t.toml"), text.into()),
        Path::new("."),
    )
}

fn first_error(text: &str) -> String {
    match check(text) {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(e) => e.0[0].to_string(),
    }
}

const GOOD: &str = r#"
[https]
listen = ["127.0.0.1:8443"]
default_certificate = "local"

[http]
listen = ["127.0.0.1:8080"]

[[certificate]]
name = "local"
names = ["localhost"]
self_signed = true

[[route]]
host = ["localhost"]
path_prefix = "/hello"
respond = { status = 200, body = "hi" }

[[route]]
pool = "app"

[[pool]]
name = "app"
[[pool.server]]
address = "127.0.0.1:9000"
weight = 2
"#;

#[test]
fn good_config_compiles() {
    let v = check(GOOD).unwrap();
    assert_eq!(v.https.listen, vec!["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(v.routes.len(), 2);
    assert_eq!(v.pools[0].servers[0].1, 2);
    assert_eq!(v.limits.max_headers, 100);
    assert_eq!(v.certificates[0].names[0].to_string(), "localhost");
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = first_error(&GOOD.replace("weight = 2", "weight = 2\nwieght = 3"));
    assert!(e.starts_with("t.toml:"), "{e}");
    assert!(
        e.contains("pool[0].server[0].wieght")
            || e.contains("pool[0].wieght")
            || e.contains("wieght"),
        "{e}"
    );
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn syntax_error_has_position() {
    let e = first_error("[https\nlisten = 1");
    assert!(e.starts_with("t.toml:1:"), "{e}");
}

#[test]
fn type_error_names_key() {
    let e = first_error("[limits]\nmax_headers = \"many\"\n");
    assert!(e.starts_with("t.toml:2:"), "{e}");
    assert!(e.contains("limits.max_headers"), "{e}");
}

#[test]
fn missing_pool_is_named() {
    let e = first_error(&GOOD.replace("pool = \"app\"", "pool = \"nope\""));
    assert!(
        e.contains("route[1].pool") && e.contains("no [[pool]] named \"nope\""),
        "{e}"
    );
    let line = GOOD.lines().position(|l| l == "pool = \"app\"").unwrap() + 1;
    assert!(e.starts_with(&format!("t.toml:{line}:")), "{e}");
}

#[test]
fn bad_values_are_refused() {
    assert!(first_error(&GOOD.replace("127.0.0.1:9000", "localhost")).contains("invalid address"));
    assert!(first_error(&GOOD.replace("status = 200", "status = 700")).contains("respond.status"));
    assert!(
        first_error(&GOOD.replace(
            "default_certificate = \"local\"",
            "default_certificate = \"x\""
        ))
        .contains("https.default_certificate")
    );
    assert!(
        first_error(&GOOD.replace(
            "self_signed = true",
            "cert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\""
        ))
        .contains("cannot read certificate file")
    );
    assert!(
        first_error(&GOOD.replace("path_prefix = \"/hello\"", "path_prefix = \"hello\""))
            .contains("must start with '/'")
    );
    assert!(
        first_error(&GOOD.replace(
            "[http]\nlisten = [\"127.0.0.1:8080\"]",
            "[http]\nlisten = [\"127.0.0.1:8443\"]"
        ))
        .contains("already used")
    );
    assert!(
        first_error(&GOOD.replace(
            "[[route]]\npool = \"app\"",
            "[[route]]\npool = \"app\"\nrespond = {}"
        ))
        .contains("exactly one")
    );
    assert!(
        first_error("[limits]\nidle_timeout = \"5 parsecs\"\n").contains("limits.idle_timeout")
    );
}
