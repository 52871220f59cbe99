//! SIP messages parsed and dispatched per second.
//!
//! A realistic `200 OK` to a REGISTER is parsed with `Message::parse_datagram` and dispatched
//! into a `TransactionLayer` holding 10,000 client transactions, each response to a different
//! pending REGISTER. Run with
//! `cargo bench -p sipcheck-core --bench sip -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipcheck_core::sip::build::{RequestSpec, ViaSpec};
use sipcheck_core::sip::msg::Message;
use sipcheck_core::sip::transaction::{TimerConfig, TransactionLayer};
use sipcheck_core::sip::transport::Transport;

const PENDING: usize = 10_000;

/// The bench's one clock read outside criterion: the virtual `now` of the layer.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods)]
fn stopwatch() -> Instant {
    Instant::now()
}

fn branch(i: usize) -> String {
    format!("z9hG4bK{:016x}", 0x9e37_79b9_u64.wrapping_mul(i as u64 + 1))
}

fn register(i: usize) -> Bytes {
    let branch = branch(i);
    let aor = format!("<sip:user{i}@example.com>");
    let from = format!("{aor};tag=f{i:08x}");
    let call_id = format!("{:024x}@192.0.2.10", i as u128 * 7919);
    let contact = format!("<sip:user{i}@192.0.2.10:5060;transport=udp>;expires=3600");
    let spec = RequestSpec {
        method: "REGISTER",
        uri: "sip:example.com",
        via: ViaSpec {
            transport: Transport::Udp,
            sent_by: "192.0.2.10:5060".parse().unwrap(),
            branch: &branch,
            rport: true,
        },
        routes: &[],
        from: &from,
        to: &aor,
        call_id: &call_id,
        cseq: 1,
        contact: Some(&contact),
        extra: &[
            ("Expires", "3600"),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
        ],
        body: None,
    };
    Bytes::from(spec.to_vec())
}

fn ok_to_register(i: usize) -> Bytes {
    let b = branch(i);
    let call_id = format!("{:024x}@192.0.2.10", i as u128 * 7919);
    Bytes::from(format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={b};rport=5060;received=192.0.2.10\r\n\
From: <sip:user{i}@example.com>;tag=f{i:08x}\r\n\
To: <sip:user{i}@example.com>;tag=as6f3b2e1c\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:user{i}@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Server: Asterisk PBX 20.5.0\r\n\
Date: Tue, 03 Feb 2026 10:00:00 GMT\r\n\
Content-Length: 0\r\n\r\n"
    ))
}

/// A layer with `PENDING` REGISTER client transactions in Trying.
fn loaded_layer(now: Instant) -> TransactionLayer<u32> {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    for i in 0..PENDING {
        layer
            .send_request_bytes(now, register(i), false, 1)
            .unwrap();
    }
    while layer.poll_transmit().is_some() {}
    layer
}

fn parse_and_dispatch(c: &mut Criterion) {
    let now = base();
    let template = loaded_layer(now);
    let responses: Vec<Bytes> = (0..PENDING).map(ok_to_register).collect();

    let mut group = c.benchmark_group("sip");
    group.throughput(Throughput::Elements(1));

    group.bench_function("parse 200 OK (REGISTER)", |b| {
        let raw = responses[0].clone();
        b.iter(|| Message::parse_datagram(black_box(raw.clone())).unwrap());
    });

    group.bench_function("parse + dispatch into 10k pending", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                // A fresh layer for every 10,000 responses, so each one meets a pending
                // transaction; building it is not timed.
                let mut layer = template.clone();
                let n = left.min(PENDING);
                let started = stopwatch();
                for raw in &responses[..n] {
                    let message = Message::parse_datagram(raw.clone()).unwrap();
                    black_box(layer.handle_message(now, message, false, 1));
                    while let Some(event) = layer.poll_event() {
                        black_box(event);
                    }
                }
                total += started.elapsed();
                left -= n;
            }
            total
        });
    });

    group.bench_function("dispatch (pre-parsed) into 10k pending", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let mut layer = template.clone();
                let n = left.min(PENDING);
                let parsed: Vec<Message> = responses[..n]
                    .iter()
                    .map(|raw| Message::parse_datagram(raw.clone()).unwrap())
                    .collect();
                let started = stopwatch();
                for message in parsed {
                    black_box(layer.handle_message(now, message, false, 1));
                    while let Some(event) = layer.poll_event() {
                        black_box(event);
                    }
                }
                total += started.elapsed();
                left -= n;
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, parse_and_dispatch);
criterion_main!(benches);
