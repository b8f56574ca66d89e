//! What a method sees of one call, and the trait an interface implements.

use std::os::fd::OwnedFd;

use serde_json::{Map, Value};

use crate::wire::{offending_field, reply_text, ErrorReply};

/// Who called: the credentials the kernel recorded when the connection was made
/// (`SO_PEERCRED`), read once at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Pid (0 if the caller is in a pid namespace the server cannot see).
    pub pid: i32,
}

/// Where a call's intermediate replies go: returns false once the caller is gone.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(Vec<u8>) -> bool;

/// One call of a method: its parameters, its caller, the file descriptors sent with it, and a
/// way to send intermediate replies.
pub struct Call<'a> {
    pub(crate) interface: &'a str,
    pub(crate) method: &'a str,
    pub(crate) parameters: &'a Value,
    pub(crate) peer: Peer,
    pub(crate) more: bool,
    pub(crate) oneway: bool,
    pub(crate) fds: Vec<Option<OwnedFd>>,
    pub(crate) sink: Sink<'a>,
    pub(crate) gone: bool,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("interface", &self.interface)
            .field("method", &self.method)
            .field("parameters", &self.parameters)
            .field("peer", &self.peer)
            .field("more", &self.more)
            .field("oneway", &self.oneway)
            .field("fds", &self.fds)
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a> {
    /// The method's name within its interface (`Allocate`).
    pub fn method(&self) -> &str {
        self.method
    }

    /// The interface the call is for (`io.credns.Registry`).
    pub fn interface(&self) -> &str {
        self.interface
    }

    /// The parameters: an object, or `Null` when the caller sent none.
    pub fn parameters(&self) -> &Value {
        self.parameters
    }

    /// The caller.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// The caller accepts several replies.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The caller wants no reply (the method still runs; its result is dropped).
    pub fn oneway(&self) -> bool {
        self.oneway
    }

    /// How many file descriptors came with the call (`SCM_RIGHTS`), taken or not.
    pub fn fd_count(&self) -> usize {
        self.fds.len()
    }

    /// The file descriptor at `index`; `None` if there is none or it was already taken.
    /// Those not taken are closed as soon as the method returns.
    pub fn take_fd(&mut self, index: u64) -> Option<OwnedFd> {
        let i = usize::try_from(index).ok()?;
        self.fds.get_mut(i)?.take()
    }

    /// Deserialize the parameters (`Null` counts as `{}`) into `T` (best declared with
    /// `#[serde(deny_unknown_fields)]`). A failure is `org.varlink.service.InvalidParameter`
    /// naming the offending top-level field when it can be found (an unknown field, one of the
    /// wrong type, a missing one; `""` otherwise), with a `message` parameter holding serde's
    /// text.
    pub fn parameters_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ErrorReply> {
        parameters_as(self.parameters)
    }

    /// Send an intermediate reply (`"continues": true`) now; the method's return value is the
    /// last reply. `Err(ErrorReply::expected_more())` if the caller did not set `more`;
    /// `Err(ErrorReply::disconnected())` once the caller is gone or has left too many replies
    /// unread (the method should return; nothing more is sent). For a `oneway` call the reply
    /// is dropped.
    pub fn reply_continues(&mut self, parameters: Value) -> Result<(), ErrorReply> {
        if !self.more {
            return Err(ErrorReply::expected_more());
        }
        if self.gone {
            return Err(ErrorReply::disconnected());
        }
        if self.oneway {
            return Ok(());
        }
        let mut text = reply_text(&Ok(parameters), true);
        text.push(0);
        if (self.sink)(text) {
            Ok(())
        } else {
            self.gone = true;
            Err(ErrorReply::disconnected())
        }
    }
}

/// [`Call::parameters_as`] on any parameters value.
pub fn parameters_as<T: serde::de::DeserializeOwned>(parameters: &Value) -> Result<T, ErrorReply> {
    let empty = Value::Object(Map::new());
    let v = match parameters {
        Value::Null => &empty,
        v @ Value::Object(_) => v,
        _ => {
            return Err(ErrorReply::invalid_parameter_message(
                "",
                "parameters must be an object",
            ))
        }
    };
    T::deserialize(v).map_err(|e| {
        let text = e.to_string();
        let field = match v {
            Value::Object(m) => offending_field::<T>(m, &text),
            _ => String::new(),
        };
        ErrorReply::invalid_parameter_message(&field, text)
    })
}

/// A varlink interface a [`Server`](crate::Server) serves.
pub trait Interface: Send + Sync + 'static {
    /// Its fully qualified name (`io.credns.Registry`).
    fn name(&self) -> &str;

    /// Its IDL text (`interface io.credns.Registry ...`), served by
    /// `org.varlink.service.GetInterfaceDescription`. The server also reads its `method`
    /// lines: a call of a method not declared there is answered
    /// `org.varlink.service.MethodNotFound` without calling [`call`](Self::call) (if the text
    /// declares no method at all, every call is passed on).
    fn description(&self) -> &str;

    /// Run one call; the result is the final reply. Intermediate replies go through
    /// [`Call::reply_continues`]. Runs on a worker thread: it may block, but every worker it
    /// holds is one fewer for other callers.
    fn call(&self, call: &mut Call<'_>) -> Result<Value, ErrorReply>;
}

/// The method names a description declares (`method Name(`).
pub(crate) fn declared_methods(description: &str) -> Vec<String> {
    description
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("method "))
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_read_from_the_description() {
        let d = "# method Not(\ninterface a.b\nmethod One() -> ()\n  method Two(x: int)\n-> ()\ntype method";
        assert_eq!(declared_methods(d), vec!["One", "Two"]);
        assert_eq!(
            declared_methods(crate::SERVICE_IDL),
            vec!["GetInfo", "GetInterfaceDescription"]
        );
    }
}
