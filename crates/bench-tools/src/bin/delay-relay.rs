//! `delay-relay LISTEN TARGET DELAY_MS [MAX_QUEUE_MIB]`: a TCP relay that adds DELAY_MS to each direction (2 x DELAY_MS to the round trip), for bench/run.py's high-latency case.
//!
//! Every accepted connection is relayed to TARGET over a new connection. Each direction is a
//! timed queue: a reader stamps every chunk it reads with the time it is due (now + DELAY_MS)
//! and queues it, a writer writes each chunk when it is due. Chunks wait side by side, so the
//! delay adds latency without limiting throughput. At most MAX_QUEUE_MIB (default 16) wait in
//! one direction; past that the reader stops reading and TCP's back-pressure reaches the
//! sender, as a link with that bandwidth-delay product would. A half-close is passed on after
//! the same delay. LISTEN may use port 0; the bound port is printed on stdout.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// Largest single read; each read is copied into a chunk of its own size.
const READ_BUF: usize = 256 * 1024;

fn usage() -> ! {
    eprintln!("usage: delay-relay LISTEN_ADDR TARGET_ADDR ONE_WAY_DELAY_MS [MAX_QUEUE_MIB]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=4).contains(&args.len()) {
        usage();
    }
    let delay = Duration::from_millis(args[2].parse().unwrap_or_else(|_| usage()));
    let max_queue = match args.get(3) {
        Some(m) => m.parse::<usize>().unwrap_or_else(|_| usage()) << 20,
        None => 16 << 20,
    };
    if max_queue < READ_BUF {
        usage();
    }
    let listener = TcpListener::bind(&args[0]).await?;
    println!("{}", listener.local_addr()?.port());
    let target = Arc::new(args[1].clone());
    loop {
        let inbound = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("delay-relay: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let target = Arc::clone(&target);
        tokio::spawn(async move {
            let outbound = match TcpStream::connect(target.as_str()).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("delay-relay: connect {target}: {e}");
                    return;
                }
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pipe(in_read, out_write, delay, max_queue),
                pipe(out_read, in_write, delay, max_queue)
            );
        });
    }
}

/// One direction: read, hold each chunk for `delay`, write. Returns when the reader has seen
/// the end and the writer has passed it on, or when writing fails.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, max_queue: usize) {
    // Bytes that may still be read before the queued ones are written.
    let budget = Arc::new(Semaphore::new(max_queue));
    // `None` is the end of the stream.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();

    let writer = async {
        while let Some((due, chunk)) = rx.recv().await {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            match chunk {
                Some(data) => {
                    if to.write_all(&data).await.is_err() {
                        return;
                    }
                    budget.add_permits(data.len());
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };

    let reader = async {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let Ok(permit) = budget.acquire_many(READ_BUF as u32).await else {
                return;
            };
            permit.forget();
            let n = from.read(&mut buf).await.unwrap_or(0);
            budget.add_permits(READ_BUF - n);
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            let end = chunk.is_none();
            if tx.send((Instant::now() + delay, chunk)).is_err() || end {
                return;
            }
        }
    };

    tokio::pin!(writer);
    tokio::select! {
        // The writer failed: stop reading.
        () = &mut writer => return,
        () = reader => {}
    }
    writer.await;
}
