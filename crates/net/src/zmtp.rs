//! The server end of ZMTP 3.0 with the NULL mechanism, as the
//! [socket guard](crate::guard) speaks it to REQ and DEALER peers (the
//! `zeromq` crate's and libzmq's clients): the 64-byte greeting, the
//! `READY` command naming the socket type `ROUTER`, then messages of
//! frames (`flags | size | body`).
//!
//! The guard's [`ZmtpScanner`](crate::guard::ZmtpScanner) checks every
//! byte against the size, part and greeting limits before the
//! [`Decoder`] here sees it, so the decoder only cuts the accepted stream
//! into frames; it still never panics on any input.

use bytes::{Buf, Bytes, BytesMut};

/// Length of the ZMTP 3 greeting.
pub const GREETING: usize = 64;

const MORE: u8 = 0x01;
const LONG: u8 = 0x02;
const COMMAND: u8 = 0x04;

/// Our greeting: ZMTP 3.0, mechanism `NULL`, not as server (ignored by
/// `NULL`). Version 3.0 tells the peer not to send 3.1 heartbeats; a
/// `PING` is answered all the same.
pub fn greeting() -> [u8; GREETING] {
    let mut g = [0u8; GREETING];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// The `READY` command frame announcing a ROUTER socket.
pub fn ready() -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.push(5);
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"ROUTER");
    let mut out = Vec::with_capacity(body.len() + 9);
    header(COMMAND, body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn header(flags: u8, size: usize, out: &mut Vec<u8>) {
    if size > 255 {
        out.push(flags | LONG);
        out.extend_from_slice(&(size as u64).to_be_bytes());
    } else {
        out.push(flags);
        out.push(size as u8);
    }
}

/// Appends `frames` as one message (every frame but the last with MORE).
pub fn encode(frames: &[Bytes], out: &mut Vec<u8>) {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.iter().enumerate() {
        header(if i < last { MORE } else { 0 }, frame.len(), out);
        out.extend_from_slice(frame);
    }
}

/// What the peer sent: a command or a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A command frame's body (`name-length | name | data`).
    Command(Bytes),
    /// A message's frames, in order.
    Message(Vec<Bytes>),
}

/// A command's name, when the body is well formed.
pub fn command_name(body: &[u8]) -> Option<&[u8]> {
    let (&len, rest) = body.split_first()?;
    rest.get(..usize::from(len))
}

/// The value of the `Socket-Type` property of a `READY` command body.
pub fn socket_type(ready: &[u8]) -> Option<&[u8]> {
    let name = command_name(ready)?;
    let mut rest = ready.get(1 + name.len()..)?;
    while let Some((&len, after)) = rest.split_first() {
        let key = after.get(..usize::from(len))?;
        let after = after.get(usize::from(len)..)?;
        let size = u32::from_be_bytes(after.get(..4)?.try_into().ok()?) as usize;
        let value = after.get(4..4usize.checked_add(size)?)?;
        if key.eq_ignore_ascii_case(b"Socket-Type") {
            return Some(value);
        }
        rest = after.get(4 + size..)?;
    }
    None
}

/// The `PONG` command frame answering a `PING` body (ZMTP 3.1: the ping's
/// context, at most 16 bytes, echoed), or `None` for another command.
pub fn pong(body: &[u8]) -> Option<Vec<u8>> {
    if command_name(body)? != b"PING" {
        return None;
    }
    // name-length, "PING", 2-byte TTL, then the context.
    let context = body.get(7..).unwrap_or_default();
    let context = &context[..context.len().min(16)];
    let mut reply = vec![4];
    reply.extend_from_slice(b"PONG");
    reply.extend_from_slice(context);
    let mut out = Vec::with_capacity(reply.len() + 2);
    header(COMMAND, reply.len(), &mut out);
    out.extend_from_slice(&reply);
    Some(out)
}

/// Cuts the peer's byte stream (greeting first) into [`Item`]s.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    greeted: bool,
    parts: Vec<Bytes>,
}

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete item, if the buffered bytes hold one.
    pub fn next_item(&mut self) -> Option<Item> {
        if !self.greeted {
            if self.buf.len() < GREETING {
                return None;
            }
            self.buf.advance(GREETING);
            self.greeted = true;
        }
        loop {
            let flags = *self.buf.first()?;
            let (size, head): (usize, usize) = if flags & LONG != 0 {
                let raw: [u8; 8] = self.buf.get(1..9)?.try_into().ok()?;
                (usize::try_from(u64::from_be_bytes(raw)).ok()?, 9)
            } else {
                (usize::from(*self.buf.get(1)?), 2)
            };
            if self.buf.len() < head.checked_add(size)? {
                return None;
            }
            self.buf.advance(head);
            let body = self.buf.split_to(size).freeze();
            if flags & COMMAND != 0 {
                return Some(Item::Command(body));
            }
            self.parts.push(body);
            if flags & MORE == 0 {
                return Some(Item::Message(std::mem::take(&mut self.parts)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_decodes_in_any_split() {
        let mut s = greeting().to_vec();
        s.extend(ready());
        let frames = vec![Bytes::new(), Bytes::from(vec![7u8; 300])];
        encode(&frames, &mut s);
        encode(&[Bytes::from_static(b"x")], &mut s);
        for split in 0..s.len() {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            d.push(&s[..split]);
            while let Some(i) = d.next_item() {
                got.push(i);
            }
            d.push(&s[split..]);
            while let Some(i) = d.next_item() {
                got.push(i);
            }
            assert_eq!(got.len(), 3, "split at {split}");
            let Item::Command(ready) = &got[0] else {
                panic!("first is the READY command")
            };
            assert_eq!(command_name(ready), Some(&b"READY"[..]));
            assert_eq!(socket_type(ready), Some(&b"ROUTER"[..]));
            assert_eq!(got[1], Item::Message(frames.clone()));
            assert_eq!(got[2], Item::Message(vec![Bytes::from_static(b"x")]));
        }
    }

    #[test]
    fn ping_gets_pong_with_its_context() {
        let mut body = vec![4];
        body.extend_from_slice(b"PING");
        body.extend_from_slice(&[0, 10]);
        body.extend_from_slice(b"ctx");
        let pong = pong(&body).unwrap();
        assert_eq!(&pong[..], b"\x04\x08\x04PONGctx");
        assert!(super::pong(b"\x05READY").is_none());
    }

    #[test]
    fn malformed_commands_give_none_not_a_panic() {
        for body in [
            &b""[..],
            b"\x09READY",
            b"\x05READY\x0bSocket-Type\xff\xff\xff\xff",
        ] {
            let _ = command_name(body);
            assert!(socket_type(body).is_none());
            let _ = pong(body);
        }
        let mut d = Decoder::new();
        d.push(&greeting());
        d.push(&[0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_item().is_none());
        let mut d = Decoder::new();
        d.push(&greeting());
        d.push(&[0x02, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert!(d.next_item().is_none());
    }
}
