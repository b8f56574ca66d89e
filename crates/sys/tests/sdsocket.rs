//! Socket activation's side in sys: the `LISTEN_*` values parsed (property tests), and each kind
//! of descriptor a service manager could pass checked by the kernel's own answers: only a
//! listening AF_UNIX stream socket is taken, anything else is named in the refusal.

use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use credns_sys::sdsocket::{parse_listen, unix_stream_listener, ListenFd};
use proptest::prelude::*;

fn passed(name: &str, fd: impl Into<OwnedFd>) -> ListenFd {
    ListenFd {
        name: name.into(),
        fd: fd.into(),
    }
}

fn refusal(fd: ListenFd) -> String {
    unix_stream_listener(fd).unwrap_err().to_string()
}

#[test]
fn only_a_listening_unix_stream_socket_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let l = UnixListener::bind(&path).unwrap();
    let taken = unix_stream_listener(passed("io.credns.Registry", l)).unwrap();
    // It is the same socket: a client reaches it.
    let _c = UnixStream::connect(&path).unwrap();
    assert!(taken.accept().is_ok());

    let d = UnixDatagram::unbound().unwrap();
    assert_eq!(
        refusal(passed("x", d)),
        "the descriptor passed as \"x\" is an AF_UNIX SOCK_DGRAM socket, not a listening \
         AF_UNIX stream socket"
    );
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(refusal(passed("x", a)).contains("is an AF_UNIX stream socket that is not listening"));
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(refusal(passed("x", tcp)).contains("is a socket of address family 2"));
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert!(refusal(passed("x", file)).contains("is not a socket"));
}

proptest! {
    /// Values for this process with matching names are taken whole; names are kept in order.
    #[test]
    fn names_come_back_in_order(names in prop::collection::vec("[a-zA-Z0-9._-]{1,20}", 1..64)) {
        let joined = names.join(":");
        let count = names.len().to_string();
        let l = parse_listen(Some("4242"), Some(&count), Some(&joined), 4242).unwrap().unwrap();
        prop_assert_eq!(l.count, names.len());
        prop_assert_eq!(l.names, names);
    }

    /// Whatever the values: no panic, and a refusal names the variable it is about.
    #[test]
    fn any_value_is_taken_ignored_or_refused_by_name(
        pid in proptest::option::of("[0-9+x-]{0,6}"),
        fds in proptest::option::of("[0-9+x-]{0,4}"),
        names in proptest::option::of("[a-z:]{0,12}"),
    ) {
        match parse_listen(pid.as_deref(), fds.as_deref(), names.as_deref(), 4242) {
            Ok(Some(l)) => {
                prop_assert_eq!(pid.as_deref().map(str::parse::<u32>), Some(Ok(4242)));
                prop_assert_eq!(l.names.len(), l.count);
            }
            Ok(None) => {}
            Err(e) => {
                let m = e.to_string();
                prop_assert!(m.starts_with("LISTEN_"), "{}", m);
            }
        }
    }
}
