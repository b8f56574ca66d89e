//! The wire protocol: varlink framing, service introspection, and the exact errors for
//! malformed requests, unknown methods, bad parameters, unknown names and an exhausted pool,
//! each leaving nothing written.

mod common;

use credns_idmap::IdRange;
use credns_registry::Policy;
use credns_service::{AllocOptions, RegistryClient as Client, Target};
use serde_json::{json, Value};

fn raw(c: &mut Client, text: &str) -> Value {
    let mut m = text.as_bytes().to_vec();
    m.push(0);
    c.varlink().send_raw(&m, &[]).expect("send");
    serde_json::from_slice(&c.varlink().recv_raw().expect("reply")).expect("reply is JSON")
}

fn remote<T: std::fmt::Debug, E: Into<credns_api::Error>>(r: Result<T, E>) -> (String, Value) {
    match r.map_err(Into::into) {
        Err(e) if e.remote().is_some() => {
            let r = e.remote().unwrap();
            (r.error.clone(), r.parameters.clone())
        }
        other => panic!("expected a varlink error, got {other:?}"),
    }
}

#[test]
fn malformed_requests_get_invalid_parameter_and_the_connection_closes() {
    let s = common::TestServer::start(Policy::default());
    for (text, parameter) in [
        ("{\"method\": ", ""),
        ("[1, 2]", ""),
        ("{\"parameters\": {}}", "method"),
        ("{\"method\": 7}", "method"),
    ] {
        let mut c = s.client();
        let v = raw(&mut c, text);
        // The server, not an interface, refuses it: the standard error, naming the field.
        assert_eq!(v["error"], "org.varlink.service.InvalidParameter", "{text}");
        assert_eq!(v["parameters"]["parameter"], parameter, "{text}: {v}");
        assert!(v["parameters"]["message"].is_string(), "{text}: {v}");
        // The daemon hung up after answering.
        assert!(
            c.varlink().recv_raw().is_err(),
            "{text}: connection still open"
        );
    }
    assert!(s.client().list().unwrap().is_empty());
}

#[test]
fn introspection_and_unknown_methods() {
    let s = common::TestServer::start(Policy::default());
    let mut c = s.client();
    let info = c
        .varlink()
        .call("org.varlink.service.GetInfo", json!({}), &[])
        .unwrap();
    assert_eq!(
        info["interfaces"],
        json!([
            "org.varlink.service",
            "io.credns.Registry",
            "io.credns.Subid"
        ])
    );
    let d = c
        .varlink()
        .call(
            "org.varlink.service.GetInterfaceDescription",
            json!({"interface": "io.credns.Registry"}),
            &[],
        )
        .unwrap();
    let d = d["description"].as_str().unwrap();
    assert!(d.contains("interface io.credns.Registry\n"));
    assert!(d.contains("method Allocate("));
    assert!(d.contains("error QuotaExceeded ("));
    let (e, p) = remote(c.varlink().call(
        "org.varlink.service.GetInterfaceDescription",
        json!({"interface": "com.example.Nope"}),
        &[],
    ));
    assert_eq!(
        (e.as_str(), p),
        (
            "org.varlink.service.InterfaceNotFound",
            json!({"interface": "com.example.Nope"})
        )
    );
    let (e, p) = remote(
        c.varlink()
            .call("io.credns.Registry.Frobnicate", json!({}), &[]),
    );
    assert_eq!(
        (e.as_str(), p),
        (
            "org.varlink.service.MethodNotFound",
            json!({"method": "io.credns.Registry.Frobnicate"})
        )
    );
    let (e, p) = remote(c.varlink().call("com.example.Thing.Do", json!({}), &[]));
    assert_eq!(
        (e.as_str(), p),
        (
            "org.varlink.service.InterfaceNotFound",
            json!({"interface": "com.example.Thing"})
        )
    );
    // The connection survives method errors; a oneway call gets no reply.
    c.varlink()
        .send_raw(
            b"{\"method\": \"io.credns.Registry.List\", \"oneway\": true}\0",
            &[],
        )
        .unwrap();
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn bad_parameters_name_the_parameter() {
    let s = common::TestServer::start(Policy::default());
    let mut c = s.client();
    let cases = [
        (
            json!({"name": "a", "size": "big"}),
            "size",
            "invalid type: string \"big\", expected u64",
        ),
        (
            json!({"name": "a", "size": -1}),
            "size",
            "invalid value: integer `-1`, expected u64",
        ),
        (
            json!({"name": "a", "bogus": 1}),
            "bogus",
            "unknown field `bogus`",
        ),
        (
            json!({"name": 5}),
            "name",
            "invalid type: integer `5`, expected a string",
        ),
        (
            json!({}),
            "name",
            "a lease is needed: a name or a userNamespaceFileDescriptor",
        ),
        (
            json!({"name": "a", "high": "yes"}),
            "high",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            json!({"userNamespaceFileDescriptor": 0}),
            "userNamespaceFileDescriptor",
            "no file descriptor 0 came with the request (0 did)",
        ),
        (
            json!({"name": "a", "writeMaps": true}),
            "writeMaps",
            "needs a userNamespaceFileDescriptor",
        ),
        (
            json!({"name": ""}),
            "name",
            "invalid lease name \"\": empty",
        ),
        (
            json!({"name": "a", "size": 0}),
            "size",
            "invalid size 0 for the main pool: a range holds at least one id",
        ),
        (
            json!({"name": "a", "high": true}),
            "high",
            "a high-window range was requested but high.enabled is false",
        ),
    ];
    for (params, parameter, reason) in cases {
        let (e, p) = remote(
            c.varlink()
                .call("io.credns.Registry.Allocate", params.clone(), &[]),
        );
        assert_eq!(e, "io.credns.Registry.InvalidParameter", "{params}");
        assert_eq!(p["parameter"], parameter, "{params}: {p}");
        assert_eq!(p["reason"], reason, "{params}: {p}");
    }
    let (e, p) = remote(
        c.varlink()
            .call("io.credns.Registry.Allocate", json!([1]), &[]),
    );
    assert_eq!(
        (e.as_str(), &p["parameter"]),
        ("org.varlink.service.InvalidParameter", &json!("parameters"))
    );
    // A call the server cannot take ends the connection.
    let mut c = s.client();
    // A file that is not a user namespace.
    let f = std::fs::File::open("/proc/self/stat").unwrap();
    use std::os::fd::AsFd;
    let (e, p) = remote(c.allocate_userns(f.as_fd(), None, &AllocOptions::default()));
    assert_eq!(e, "io.credns.Registry.InvalidParameter");
    assert_eq!(p["parameter"], "userNamespaceFileDescriptor");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .starts_with("not a user namespace: ioctl NS_GET_OWNER_UID"),
        "{p}"
    );
    let (e, p) = remote(c.varlink().call(
        "io.credns.Registry.Release",
        json!({"id": 1, "name": "x"}),
        &[],
    ));
    assert_eq!(
        (e.as_str(), &p["parameter"]),
        ("io.credns.Registry.InvalidParameter", &json!("id"))
    );
    let (e, p) = remote(c.varlink().call(
        "io.credns.Registry.Who",
        json!({"id": 4294967296u64}),
        &[],
    ));
    assert_eq!(
        (e.as_str(), &p["reason"]),
        (
            "io.credns.Registry.InvalidParameter",
            &json!("4294967296 is not a 32-bit id")
        )
    );
    // Nothing was written by any of them.
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn unknown_names_and_ids_are_not_found() {
    let s = common::TestServer::start(Policy::default());
    let mut c = s.client();
    let (e, p) = remote(c.show(&Target::Name("ghost".into())));
    assert_eq!(e, "io.credns.Registry.NotFound");
    assert_eq!(p["message"], "no allocation named \"ghost\"");
    let (e, p) = remote(c.release(&Target::Id(42)));
    assert_eq!(e, "io.credns.Registry.NotFound");
    assert_eq!(p["what"], "allocation #42");
}

#[test]
fn exhausted_pool_and_taken_ranges_are_refused_without_a_write() {
    let mut policy = Policy::default();
    policy.pool.ranges = vec![IdRange {
        start: 1_000_000,
        end: 1_000_000 + 3 * 65_536 - 1,
    }];
    policy.pool.align = 65_536;
    let s = common::TestServer::start(policy);
    let mut c = s.client();
    // 1000000 is not aligned: the aligned blocks start at 1048576 and 1114112.
    let a = c.allocate_name("a", &AllocOptions::default()).unwrap();
    let b = c.allocate_name("b", &AllocOptions::default()).unwrap();
    assert_eq!((a.uid.start, b.uid.start), (1_048_576, 1_114_112));
    let (e, p) = remote(c.allocate_name("c", &AllocOptions::default()));
    assert_eq!(e, "io.credns.Registry.PoolExhausted");
    assert_eq!(p["requested"], 65_536);
    assert_eq!(p["align"], 65_536);
    // The aligned tail 1179648..=1196607 is all that is left.
    assert_eq!(p["largestFree"], 16_960);
    // The same lease again is the same allocation (idempotent), not a new one.
    let again = c.allocate_name("a", &AllocOptions::default()).unwrap();
    assert_eq!((&again.allocation, again.fresh), (&a.allocation, false));
    let (e, p) = remote(c.register_name(
        "r",
        credns_service::Range {
            start: 1_048_600,
            end: 1_048_700,
        },
        None,
    ));
    assert_eq!(e, "io.credns.Registry.RangeUnavailable");
    assert_eq!(p["allocation"], a.id);
    assert_eq!(c.list().unwrap(), vec![a.allocation.clone(), b.allocation]);
    c.release(&Target::Name("a".into())).unwrap();
    let c2 = c.allocate_name("c", &AllocOptions::default()).unwrap();
    assert_eq!(c2.uid, a.uid);
    assert!(c2.id > a.id, "ids are never reused");
}

#[test]
fn bind_replaces_a_stale_socket_but_nothing_else() {
    use credns_service::{Config, Server, Service};
    let dir = common::open_tempdir();
    let cfg = Config {
        store: dir.path().join("r.redb"),
        policy: Policy::default(),
        procfs: credns_sys::ProcFs::new(),
        etc: None,
        accept_rollback: false,
        reserve: 0,
    };
    let svc = Service::open(&cfg).unwrap();
    // A regular file where the socket should go is left alone.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let e = Server::bind(&file, svc.clone()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "bind {}: exists and is not a socket; not replacing it",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    // A socket nobody listens on is stale and replaced.
    let sock = dir.path().join("sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let server = Server::bind(&sock, svc.clone()).unwrap();
    // A live one is refused.
    let e = Server::bind(&sock, svc).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: another daemon is already listening there",
            sock.display()
        )
    );
    drop(server);
}
