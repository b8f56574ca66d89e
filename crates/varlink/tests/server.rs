//! The server over real sockets: calls, errors, `more`, descriptors, limits, timeouts.

mod common;

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use credns_varlink::{Client, Error, Limits, Server};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(20);

fn remote(r: Result<Value, Error>) -> credns_varlink::ErrorReply {
    match r {
        Err(Error::Remote(e)) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Read a pipe to its end, with the write end's holders gone.
fn read_to_eof(r: OwnedFd) -> String {
    let mut s = String::new();
    std::fs::File::from(r).read_to_string(&mut s).unwrap();
    s
}

#[test]
fn calls_errors_and_more() {
    let srv = start(Limits::default());
    let mut c = srv.client();
    let r = c
        .call(
            "io.example.Toy.Echo",
            json!({"text": "ab", "times": 2}),
            &[],
        )
        .unwrap();
    assert_eq!(r, json!({"text": "abab", "uid": 0, "fds": 0}));

    let e = remote(c.call("io.example.Toy.Fail", Value::Null, &[]));
    assert_eq!(e.error, "io.example.Toy.Broken");
    assert_eq!(e.message(), "it broke");
    assert_eq!(e.to_string(), "it broke (io.example.Toy.Broken)");

    let all = c
        .call_more("io.example.Toy.Count", json!({"n": 3}), &[])
        .unwrap();
    assert_eq!(
        all,
        vec![
            json!({"i": 0}),
            json!({"i": 1}),
            json!({"i": 2}),
            json!({"i": 3})
        ]
    );
    // Without "more", a method that needs it gets ExpectedMore.
    let r = c.call("io.example.Toy.Count", json!({"n": 3}), &[]);
    assert_eq!(
        r.unwrap_err().remote_name(),
        Some("org.varlink.service.ExpectedMore")
    );
    // n = 0 sends only the last reply.
    let all = c
        .call_more("io.example.Toy.Count", json!({"n": 0}), &[])
        .unwrap();
    assert_eq!(all, vec![json!({"i": 0})]);

    let e = remote(c.call("io.example.Nope.Echo", json!({}), &[]));
    assert_eq!(e.error, "org.varlink.service.InterfaceNotFound");
    assert_eq!(e.parameters["interface"], "io.example.Nope");
    let e = remote(c.call("io.example.Toy.Undeclared", json!({}), &[]));
    assert_eq!(e.error, "org.varlink.service.MethodNotFound");
    assert_eq!(e.parameters["method"], "io.example.Toy.Undeclared");
    let e = remote(c.call("NoDots", json!({}), &[]));
    assert_eq!(e.error, "org.varlink.service.InterfaceNotFound");

    // The connection survives all of that.
    let r = c
        .call("io.example.Toy.Echo", json!({"text": "still"}), &[])
        .unwrap();
    assert_eq!(r["text"], "still");
}

#[test]
fn service_interface() {
    let srv = start(Limits::default());
    let mut c = srv.client();
    let r = c
        .call("org.varlink.service.GetInfo", json!({}), &[])
        .unwrap();
    assert_eq!(
        r,
        json!({
            "vendor": "credns", "product": "toy", "version": "1.2.3",
            "url": "https://example.invalid/toy",
            "interfaces": ["org.varlink.service", "io.example.Toy"],
        })
    );
    let r = c
        .call(
            "org.varlink.service.GetInterfaceDescription",
            json!({"interface": "io.example.Toy"}),
            &[],
        )
        .unwrap();
    assert_eq!(r["description"], TOY_IDL);
    let r = c
        .call(
            "org.varlink.service.GetInterfaceDescription",
            json!({"interface": "org.varlink.service"}),
            &[],
        )
        .unwrap();
    assert!(r["description"]
        .as_str()
        .unwrap()
        .contains("interface org.varlink.service"));
    let e = remote(c.call(
        "org.varlink.service.GetInterfaceDescription",
        json!({"interface": "io.example.Other"}),
        &[],
    ));
    assert_eq!(e.error, "org.varlink.service.InterfaceNotFound");
    let e = remote(c.call(
        "org.varlink.service.GetInterfaceDescription",
        json!({}),
        &[],
    ));
    assert_eq!(e.error, "org.varlink.service.InvalidParameter");
    assert_eq!(e.parameters["parameter"], "interface");
    let e = remote(c.call("org.varlink.service.Nope", json!({}), &[]));
    assert_eq!(e.error, "org.varlink.service.MethodNotFound");
}

#[test]
fn invalid_parameter_names_the_field() {
    let srv = start(Limits::default());
    let mut c = srv.client();
    for (params, field) in [
        (json!({"text": 1}), "text"),
        (json!({"text": "a", "times": "x"}), "times"),
        (json!({"text": "a", "bogus": 1}), "bogus"),
        (json!({}), "text"),
        (Value::Null, "text"),
    ] {
        let e = remote(c.call("io.example.Toy.Echo", params.clone(), &[]));
        assert_eq!(e.error, "org.varlink.service.InvalidParameter", "{params}");
        assert_eq!(e.parameters["parameter"], field, "{params}: {e}");
        assert!(e.parameters["message"].is_string());
    }
}

#[test]
fn oneway_pipelined_and_upgrade() {
    let srv = start(Limits::default());
    let mut c = srv.client();
    c.call_oneway("io.example.Toy.Echo", json!({"text": "nobody reads this"}))
        .unwrap();
    // Two calls in one write: answered in order.
    c.send_raw(
        b"{\"method\":\"io.example.Toy.Echo\",\"parameters\":{\"text\":\"1\"}}\0\
          {\"method\":\"io.example.Toy.Echo\",\"parameters\":{\"text\":\"2\"}}\0",
        &[],
    )
    .unwrap();
    let first: Value = serde_json::from_slice(&c.recv_raw().unwrap()).unwrap();
    let second: Value = serde_json::from_slice(&c.recv_raw().unwrap()).unwrap();
    assert_eq!(first["parameters"]["text"], "1");
    assert_eq!(second["parameters"]["text"], "2");
    c.send_raw(
        b"{\"method\":\"io.example.Toy.Echo\",\"parameters\":{\"text\":\"u\"},\"upgrade\":true}\0",
        &[],
    )
    .unwrap();
    let r: Value = serde_json::from_slice(&c.recv_raw().unwrap()).unwrap();
    assert_eq!(r["error"], "org.varlink.service.MethodNotImplemented");
    assert_eq!(
        c.call("io.example.Toy.Echo", json!({"text": "x"}), &[])
            .unwrap()["text"],
        "x"
    );
}

#[test]
fn fds_are_passed_taken_and_the_rest_closed() {
    let srv = start(Limits::default());
    let mut c = srv.client();
    let (r, w) = rustix::pipe::pipe().unwrap();
    let (r2, w2) = rustix::pipe::pipe().unwrap();
    c.call(
        "io.example.Toy.WriteFd",
        json!({"fd": 1, "text": "hello"}),
        &[w2.as_fd(), w.as_fd()],
    )
    .unwrap();
    drop((w, w2));
    // The method wrote to and dropped fd 1; the server closed fd 0, which it did not take,
    // as soon as the method returned: both pipes see their end.
    assert_eq!(read_to_eof(r), "hello");
    assert_eq!(read_to_eof(r2), "");

    // Echo takes none: every descriptor is closed at once.
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| rustix::pipe::pipe().unwrap()).collect();
    let ws: Vec<_> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
    let reply = c
        .call("io.example.Toy.Echo", json!({"text": "fds"}), &ws)
        .unwrap();
    assert_eq!(reply["fds"], 3);
    for (r, w) in pipes {
        drop(w);
        assert_eq!(read_to_eof(r), "");
    }
    // A missing index is the method's business.
    let e = remote(c.call("io.example.Toy.WriteFd", json!({"fd": 0, "text": "x"}), &[]));
    assert_eq!(e.parameters["parameter"], "fd");
}

#[test]
fn oneway_calls_sent_just_before_closing_still_run() {
    let srv = start(Limits::default());
    for _ in 0..3 {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut c = srv.client();
        // A slower first call, so the peer is likely gone before the second is read.
        c.send_raw(
            b"{\"method\":\"io.example.Toy.Big\",\"parameters\":{\"size\":1000000},\"oneway\":true}\0",
            &[],
        )
        .unwrap();
        c.send_raw(
            b"{\"method\":\"io.example.Toy.WriteFd\",\"parameters\":{\"fd\":0,\"text\":\"late\"},\"oneway\":true}\0",
            &[w.as_fd()],
        )
        .unwrap();
        drop(c);
        drop(w);
        assert_eq!(read_to_eof(r), "late");
    }
}

#[test]
fn too_many_fds_close_the_connection() {
    let srv = start(Limits {
        max_fds_per_message: 2,
        ..Limits::default()
    });
    let mut c = srv.client();
    let pipes: Vec<(OwnedFd, OwnedFd)> = (0..4).map(|_| rustix::pipe::pipe().unwrap()).collect();
    let ws: Vec<_> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
    // Sent with the start of a message that never ends.
    c.send_raw(b"{\"method\":", &ws).unwrap();
    assert!(closed_within(&mut c, LONG));
    for (r, w) in pipes {
        drop(w);
        assert_eq!(read_to_eof(r), "");
    }
    assert!(srv
        .client()
        .call("io.example.Toy.Echo", json!({"text": "ok"}), &[])
        .is_ok());
}

#[test]
fn malformed_and_oversized_messages_close_the_connection() {
    let srv = start(Limits {
        max_message: 1024,
        ..Limits::default()
    });
    for (bytes, field) in [
        (&b"[1]\0"[..], ""),
        (b"not json\0", ""),
        (b"{\"method\": 5}\0", "method"),
        (b"{\"method\": \"a.B\", \"parameters\": 1}\0", "parameters"),
        (b"{\"method\": \"a.B\", \"more\": 1}\0", "more"),
    ] {
        let mut c = srv.client();
        c.send_raw(bytes, &[]).unwrap();
        let r: Value = serde_json::from_slice(&c.recv_raw().unwrap()).unwrap();
        assert_eq!(r["error"], "org.varlink.service.InvalidParameter");
        assert_eq!(r["parameters"]["parameter"], field);
        assert!(closed_within(&mut c, LONG));
    }
    let mut c = srv.client();
    c.send_raw(&[b'x'; 2000], &[]).unwrap();
    let r: Value = serde_json::from_slice(&c.recv_raw().unwrap()).unwrap();
    assert_eq!(r["error"], "org.varlink.service.InvalidParameter");
    assert_eq!(r["parameters"]["parameter"], "");
    assert!(r["parameters"]["message"]
        .as_str()
        .unwrap()
        .contains("1024"));
    assert!(closed_within(&mut c, LONG));
    // A message of exactly the limit is fine.
    let mut c = srv.client();
    let text = "y".repeat(1024 - 60);
    let msg =
        format!("{{\"method\":\"io.example.Toy.Echo\",\"parameters\":{{\"text\":\"{text}\"}}}}");
    let mut msg = msg.into_bytes();
    msg.resize(1024, b' ');
    msg.push(0);
    c.send_raw(&msg, &[]).unwrap();
    let r: Value = serde_json::from_slice(&c.recv_raw().unwrap()).unwrap();
    assert_eq!(r["parameters"]["text"], text);
}

#[test]
fn panicking_method_closes_only_its_connection() {
    let srv = start(Limits {
        workers: 1,
        ..Limits::default()
    });
    let mut c = srv.client();
    assert!(is_closed(&c.call("io.example.Toy.Panic", json!({}), &[])));
    let mut c = srv.client();
    assert_eq!(
        c.call("io.example.Toy.Echo", json!({"text": "alive"}), &[])
            .unwrap()["text"],
        "alive"
    );
}

#[test]
fn idle_and_unfinished_connections_time_out() {
    let srv = start(Limits {
        idle_timeout: Duration::from_millis(300),
        message_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let mut idle = srv.client();
    let mut partial = srv.client();
    partial.send_raw(b"{\"method\":\"io.exa", &[]).unwrap();
    assert!(closed_within(&mut idle, LONG));
    assert!(closed_within(&mut partial, LONG));
    // A connection that keeps calling stays up past the timeout.
    let mut busy = srv.client();
    for _ in 0..8 {
        busy.call("io.example.Toy.Echo", json!({"text": "x"}), &[])
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn per_principal_limit() {
    let srv = start(Limits {
        max_connections_per_principal: 3,
        ..Limits::default()
    });
    let mut clients: Vec<Client> =
        as_uid(65534, || (0..5).map(|_| srv.client()).collect::<Vec<_>>());
    let results: Vec<bool> = clients
        .iter_mut()
        .map(|c| {
            let r = c.call("io.example.Toy.Echo", json!({"text": "n"}), &[]);
            match &r {
                Ok(v) => assert_eq!(v["uid"], 65534),
                Err(_) => assert!(is_closed(&r), "{r:?}"),
            }
            r.is_ok()
        })
        .collect();
    assert_eq!(results, [true, true, true, false, false]);
    // Another user and root are not affected.
    let mut other = as_uid(65533, || srv.client());
    assert_eq!(
        other
            .call("io.example.Toy.Echo", json!({"text": "o"}), &[])
            .unwrap()["uid"],
        65533
    );
    let mut root = srv.client();
    root.call("io.example.Toy.Echo", json!({"text": "r"}), &[])
        .unwrap();
    // Closing one frees a place.
    clients.truncate(2);
    let mut again = as_uid(65534, || srv.client());
    for _ in 0..100 {
        // The server notices the closed ones asynchronously.
        match again.call("io.example.Toy.Echo", json!({"text": "n"}), &[]) {
            Ok(_) => return,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                again = as_uid(65534, || srv.client());
            }
        }
    }
    panic!("a freed place was never reusable");
}

#[test]
fn principal_mapping_and_total_limit_with_root_reserve() {
    let srv = start_with(
        Limits {
            max_connections_per_principal: 3,
            max_connections: 4,
            root_reserve: 2,
            ..Limits::default()
        },
        |s: &mut Server| s.set_principal(Arc::new(|uid| if uid >= 60000 { 1 } else { uid })),
    );
    // 65534 and 65533 are one principal: three connections between them.
    let mut a = as_uid(65534, || vec![srv.client(), srv.client()]);
    let mut b = as_uid(65533, || vec![srv.client(), srv.client()]);
    let ok = |c: &mut Client| {
        let r = c.call("io.example.Toy.Echo", json!({"text": "n"}), &[]);
        assert!(r.is_ok() || is_closed(&r), "{r:?}");
        r.is_ok()
    };
    let got: Vec<bool> = a.iter_mut().chain(b.iter_mut()).map(ok).collect();
    assert_eq!(got, [true, true, true, false]);
    // The total: one more non-root connection fits (4), then only root's reserve (2).
    let mut c = as_uid(1000, || vec![srv.client(), srv.client()]);
    let got: Vec<bool> = c.iter_mut().map(ok).collect();
    assert_eq!(got, [true, false]);
    let mut roots = [srv.client(), srv.client(), srv.client()];
    let got: Vec<bool> = roots.iter_mut().map(ok).collect();
    assert_eq!(got, [true, true, false]);
}

#[test]
fn a_thousand_idle_connections_do_not_block_a_call() {
    let srv = start(Limits {
        max_connections: 2000,
        max_connections_per_principal: 2000,
        ..Limits::default()
    });
    let idle: Vec<UnixStream> = (0..1000).map(|_| srv.stream()).collect();
    let mut c = srv.client();
    assert_eq!(
        c.call("io.example.Toy.Echo", json!({"text": "hi"}), &[])
            .unwrap()["text"],
        "hi"
    );
    // Some of them in the middle of a message, too.
    for s in idle.iter().take(100) {
        let mut cl = Client::from_stream(s.try_clone().unwrap());
        cl.send_raw(b"{\"meth", &[]).unwrap();
    }
    assert_eq!(
        c.call("io.example.Toy.Echo", json!({"text": "hi"}), &[])
            .unwrap()["text"],
        "hi"
    );
    drop(idle);
}

/// Whether the peer of `s` closes its end within `limit` (POLLRDHUP), without reading.
fn peer_closed_within(s: &UnixStream, limit: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut fds = [PollFd::new(s, PollFlags::RDHUP)];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let t = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        if poll(&mut fds, Some(&t)).unwrap_or(0) > 0
            && fds[0]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP)
        {
            return true;
        }
    }
}

#[test]
fn a_client_that_never_reads_is_closed_without_blocking_others() {
    let srv = start(Limits {
        max_output: 256 << 10,
        workers: 2,
        ..Limits::default()
    });
    // Pipelined calls with big replies, never read.
    let mut hog = srv.client();
    let call = b"{\"method\":\"io.example.Toy.Big\",\"parameters\":{\"size\":100000}}\0";
    let mut burst = Vec::new();
    for _ in 0..40 {
        burst.extend_from_slice(call);
    }
    hog.send_raw(&burst, &[]).unwrap();
    // A `more` call streaming replies nobody reads.
    let mut streamer = srv.client();
    streamer
        .send_raw(
            b"{\"method\":\"io.example.Toy.Count\",\"parameters\":{\"n\":100000000},\"more\":true}\0",
            &[],
        )
        .unwrap();
    let mut other = srv.client();
    for _ in 0..10 {
        assert_eq!(
            other
                .call("io.example.Toy.Echo", json!({"text": "fine"}), &[])
                .unwrap()["text"],
            "fine"
        );
    }
    // Both get closed while they still read nothing: the server's end goes away (seen as
    // POLLRDHUP on ours, without reading). Only then do they read, which must not revive them.
    for (who, c) in [("hog", &hog), ("streamer", &streamer)] {
        assert!(
            peer_closed_within(c.stream(), LONG),
            "{who}: not closed within {LONG:?} while it read nothing"
        );
    }
    let mut n = 0;
    hog.set_timeout(Some(LONG)).unwrap();
    loop {
        match hog.recv_raw() {
            Ok(_) => n += 1,
            Err(e) => {
                assert!(matches!(e, Error::Disconnected), "{e}");
                break;
            }
        }
    }
    assert!(n < 40, "{n} replies");
    let mut n = 0u64;
    streamer.set_timeout(Some(LONG)).unwrap();
    loop {
        match streamer.recv_raw() {
            Ok(_) => n += 1,
            Err(e) => {
                assert!(matches!(e, Error::Disconnected), "{e}");
                break;
            }
        }
    }
    assert!(n < 100_000_000);
    assert_eq!(
        other
            .call("io.example.Toy.Echo", json!({"text": "after"}), &[])
            .unwrap()["text"],
        "after"
    );
}

#[test]
fn stop_answers_calls_already_running() {
    let srv = start(Limits::default());
    let path = srv.path.clone();
    let before = SLEEPS_STARTED.load(std::sync::atomic::Ordering::SeqCst);
    let caller = std::thread::spawn(move || {
        let mut c = Client::connect_timeout(&path, LONG).unwrap();
        c.call("io.example.Toy.Sleep", json!({"ms": 500}), &[])
    });
    // Stop once the call runs (calls still queued at stop are dropped).
    while SLEEPS_STARTED.load(std::sync::atomic::Ordering::SeqCst) == before {
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.stop();
    let r = caller.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn serve_stream_answers_on_the_calling_thread() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut server = Server::new(info(), Limits::default());
    server.add(Arc::new(Toy));
    let t = std::thread::spawn(move || server.serve_stream(b));
    let mut c = Client::from_stream(a);
    assert_eq!(
        c.call("io.example.Toy.Echo", json!({"text": "s"}), &[])
            .unwrap()["text"],
        "s"
    );
    assert_eq!(
        c.call_more("io.example.Toy.Count", json!({"n": 2}), &[])
            .unwrap()
            .len(),
        3
    );
    let (r, w) = rustix::pipe::pipe().unwrap();
    c.call(
        "io.example.Toy.WriteFd",
        json!({"fd": 0, "text": "via stream"}),
        &[w.as_fd()],
    )
    .unwrap();
    drop(w);
    assert_eq!(read_to_eof(r), "via stream");
    let e = remote(c.call("io.example.Toy.Fail", json!({}), &[]));
    assert_eq!(e.error, "io.example.Toy.Broken");
    drop(c);
    t.join().unwrap().unwrap();
}

#[test]
fn stop_ends_a_stream_that_would_never_end() {
    let srv = start(Limits::default());
    let mut c = srv.client();
    c.send_raw(
        b"{\"method\":\"io.example.Toy.Count\",\"parameters\":{\"n\":18446744073709551615},\"more\":true}\0",
        &[],
    )
    .unwrap();
    c.recv_raw().unwrap();
    srv.stop();
    assert!(closed_within(&mut c, LONG));
}
