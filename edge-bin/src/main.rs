//! `edge`: the reference binary. Work in progress: see the project's issues.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") => println!("edge {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("usage: edge --version (the proxy is being built)");
            std::process::exit(2);
        }
    }
}
