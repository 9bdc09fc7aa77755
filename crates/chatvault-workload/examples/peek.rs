//! temp
#![allow(clippy::print_stdout)]
use chatvault_workload::*;
use std::io::Read;
use std::time::Instant;
fn main() {
    let mut log = ChatLog::new(ChatLogOptions::default());
    for _ in 0..12 {
        println!("{}", String::from_utf8(log.next_record()).unwrap());
    }
    let mut buf = vec![0u8; 1 << 20];
    for (name, mut r) in [
        (
            "chat",
            Box::new(ChatLog::new(ChatLogOptions::default())) as Box<dyn Read>,
        ),
        ("media", Box::new(MediaReader::new(1, u64::MAX))),
        ("mixed", Box::new(mixed_corpus(1, u64::MAX))),
    ] {
        let t = Instant::now();
        let mut n = 0u64;
        while n < 512 << 20 {
            n += r.read(&mut buf).unwrap() as u64;
        }
        println!(
            "{name}: {:.0} MB/s",
            n as f64 / t.elapsed().as_secs_f64() / 1e6
        );
    }
}
