//! Repeats one hot operation N times, for counting its instructions with callgrind, which is
//! repeatable where wall-clock benchmarks on a shared machine are not. `bench/instructions.sh`
//! runs it twice (N = 1,000 and 3,000) and prints the difference per operation, so that
//! start-up cancels out.
//!
//! ```sh
//! cargo build --release -p sipcheck-core --example instructions
//! target/release/examples/instructions parse 1000
//! ```

use std::hint::black_box;

use bytes::Bytes;
use sipcheck_core::media::tone::{
    AudioSource, DetectorConfig, Tone, ToneDetector, ToneGenerator, ToneQuery,
};
use sipcheck_core::sip::msg::Message;

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bK000000009e3779b9;received=192.0.2.10\r\n\
From: <sip:user1@example.com>;tag=f00000001\r\n\
To: <sip:user1@example.com>;tag=37GkEhwl6\r\n\
Call-ID: 00000000000000000001eef@192.0.2.10\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:user1@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Date: Mon, 23 Nov 2026 10:00:00 GMT\r\n\
Server: Kamailio\r\n\
Content-Length: 0\r\n\r\n";

const FRAME: usize = 160;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(what), Some(n)) = (
        args.next(),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: instructions parse|generate-1000|generate-dtmf|detect-1|detect-2 N");
        std::process::exit(2);
    };
    let mut frame = [0i16; FRAME];
    let sink = match what.as_str() {
        // One 200 OK parsed.
        "parse" => {
            let bytes = Bytes::from_static(OK.as_bytes());
            (0..n)
                .map(|_| {
                    let m = Message::parse_datagram(black_box(bytes.clone())).expect("valid");
                    m.branch().map_or(0, str::len)
                })
                .sum::<usize>()
        }
        // One 20 ms frame of a tone generated.
        "generate-1000" | "generate-dtmf" => {
            let tone = if what == "generate-1000" {
                Tone::single(1000.0, -10.0)
            } else {
                Tone::dual(697.0, 1209.0, -10.0)
            };
            let mut generator = ToneGenerator::new(&tone.expect("valid tone"));
            (0..n)
                .map(|_| {
                    generator.fill(black_box(&mut frame));
                    usize::from(frame[7].unsigned_abs())
                })
                .sum()
        }
        // One 20 ms frame of a 440 Hz tone through a detector watching one or two tones.
        "detect-1" | "detect-2" => {
            let mut generator =
                ToneGenerator::new(&Tone::single(440.0, -20.0).expect("valid tone"));
            let mut detector = ToneDetector::new(DetectorConfig::default()).expect("valid");
            detector
                .watch(ToneQuery::single(440.0).expect("valid"))
                .expect("valid");
            if what == "detect-2" {
                detector
                    .watch(ToneQuery::single(1000.0).expect("valid"))
                    .expect("valid");
            }
            generator.fill(&mut frame);
            (0..n)
                .map(|_| {
                    detector.push(black_box(&frame));
                    usize::try_from(detector.blocks()).unwrap_or(0)
                })
                .sum()
        }
        other => {
            eprintln!("unknown operation {other}");
            std::process::exit(2);
        }
    };
    println!("{sink}");
}
