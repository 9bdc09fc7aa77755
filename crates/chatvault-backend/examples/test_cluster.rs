//! Starts the test S3 servers for a script (the remote benchmark) and keeps them running
//! until its standard input closes.
//!
//! Usage: `test_cluster garage|s3s-fs BUCKET...`. Prints `export NAME=VALUE` lines (the
//! endpoint and the AWS variables a client needs) on standard output, then blocks reading
//! standard input; at its end the servers are stopped and their data removed. Everything
//! listens on 127.0.0.1 only.

use std::io::{Read, Write};

use chatvault_backend::test_servers::{GarageCluster, S3sFs};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), buckets) = (args.first(), &args[1.min(args.len())..]) else {
        usage();
    };
    if buckets.is_empty() {
        usage();
    }
    let names: Vec<&str> = buckets.iter().map(String::as_str).collect();
    // Held until stdin closes, then dropped: each server is killed and its data removed.
    let (_servers, endpoint, env): (Box<dyn std::any::Any>, String, _) = match kind.as_str() {
        "garage" => {
            let c = GarageCluster::start(3, &names);
            let (e, env) = (c.endpoint(0), c.env());
            (Box::new(c), e, env)
        }
        "s3s-fs" if names.len() == 1 => {
            let s = S3sFs::start(names[0]);
            let (e, env) = (s.endpoint(), s.env());
            (Box::new(s), e, env)
        }
        _ => usage(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "export S3_ENDPOINT={endpoint}").unwrap();
    for (k, v) in env {
        writeln!(out, "export {k}={v}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

fn usage() -> ! {
    eprintln!("usage: test_cluster garage BUCKET... | test_cluster s3s-fs BUCKET");
    std::process::exit(2);
}
