//! Wire protocol between gateways (and nodes) and a node's shard service.
//!
//! One request per QUIC bidirectional stream. The client sends a request
//! frame, then the request body (a put's shard bytes) and finishes its send
//! side. The node answers with a response frame, then the response body (a
//! get's bytes), and finishes. Bodies are raw bytes whose length the frame
//! declares, so they stream without further framing and without buffering.
//!
//! # Frame, version 1 (integers little-endian)
//!
//! ```text
//! offset size  field
//!      0    4  magic "PDWF"
//!      4    2  protocol version = 1
//!      6    4  payload length P (≤ 65536; larger is refused unread)
//!     10    P  payload: a tag byte, then the message's fields
//! ```
//!
//! Field encodings: integers fixed-width LE; `ShardId` = object u128,
//! chunk u32, index u8 (21 bytes); `Option<T>` = u8 0/1 then `T`; string =
//! u16 length then UTF-8.
//!
//! | tag  | message | fields | body |
//! |------|---------|--------|------|
//! | 0x01 | Put     | shard, len u64 | `len` bytes |
//! | 0x02 | Get     | shard, offset u64, len Option<u64> (None: to the end) | — |
//! | 0x03 | Delete  | shard | — |
//! | 0x04 | Stat    | shard | — |
//! | 0x05 | List    | after Option<shard>, limit u32 (≤ 1024) | — |
//! | 0x06 | Usage   | — | — |
//! | 0x80 | Done    | — | — |
//! | 0x81 | Data    | shard_len u64, offset u64, len u64 | `len` bytes |
//! | 0x82 | Stat    | shard, len u64 | — |
//! | 0x83 | List    | count u32, count × (shard, len u64), more u8 | — |
//! | 0x84 | Usage   | capacity, available, used, shards (u64 each) | — |
//! | 0xFF | Error   | code u8 ([`ErrorCode`]), message string | — |
//!
//! If a node finds a problem after it has started a `Data` body (a block
//! failing its checksum), it resets the stream with the [`ErrorCode`] as the
//! QUIC application error code; the client reports that error and discards
//! what it received. A new protocol revision bumps the version; nodes answer
//! unknown versions with `Error(BadRequest)` and keep serving.
//! `core/tests/data/wire-v1-*.bin` are the stored samples.
//!
//! # Frame, version 2 (Raft and metadata; an addition, v1 is unchanged)
//!
//! Same prefix with protocol version = 2. A v2 payload is a tag byte and
//! fixed fields, followed on the stream by a body of the declared length
//! (at most [`MAX_META_BODY`]). Shard requests keep using v1 frames; a node
//! answers a v2 request with a v2 response.
//!
//! | tag  | message | fields | body |
//! |------|---------|--------|------|
//! | 0x10 | Raft    | from u64 (sender node id), rpc u8 ([`RaftRpc`]), len u64 | the RPC, encoded by the node's Raft module |
//! | 0x20 | Meta    | len u64 | a [`crate::meta::MetaRequest`] record |
//! | 0x90 | Reply   | len u64 | the answer (RPC result or [`crate::meta::MetaResult`]) |
//! | 0xFF | Error   | code u8, message string (as in v1) | — |
//!
//! A Raft frame is served only when the peer's certificate names node
//! `from`; `core/tests/data/wire-v2-*.bin` are the stored samples.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::shard::{ShardId, ShardInfo, Usage};

/// First bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"PDWF";
/// The protocol version this build speaks.
pub const WIRE_VERSION: u16 = 1;
/// Bytes before a frame's payload.
pub const FRAME_PREFIX_LEN: usize = 10;
/// The version of Raft and metadata frames.
pub const WIRE_VERSION_META: u16 = 2;
/// Largest v2 body accepted (a Raft batch or snapshot chunk).
pub const MAX_META_BODY: u64 = 64 << 20;
/// Largest payload accepted; bounds the memory one request can pin.
pub const MAX_PAYLOAD: u32 = 64 << 10;
/// Most entries one `List` may return (keeps a listing under
/// [`MAX_PAYLOAD`]).
pub const MAX_LIST: u32 = 1024;
/// ALPN of the shard protocol; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"predastore/1";

/// A request from a client to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store `len` bytes (the body) as `shard`, replacing any previous one.
    Put { shard: ShardId, len: u64 },
    /// Read `len` bytes (None: to the end) of `shard` from `offset`.
    Get { shard: ShardId, offset: u64, len: Option<u64> },
    /// Remove `shard`.
    Delete { shard: ShardId },
    /// Length of `shard` (header and checksum table verified).
    Stat { shard: ShardId },
    /// Up to `limit` shards with ids after `after`, in id order.
    List { after: Option<ShardId>, limit: u32 },
    /// Space and shard counts of the node.
    Usage,
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Put or delete done (a put is durable when this is sent).
    Done,
    /// `len` bytes from `offset` of a `shard_len`-byte shard follow.
    Data { shard_len: u64, offset: u64, len: u64 },
    /// Answer to `Stat`.
    Stat(ShardInfo),
    /// Answer to `List`; `more` when the listing stopped at the limit.
    List { shards: Vec<ShardInfo>, more: bool },
    /// Answer to `Usage`.
    Usage(Usage),
    /// The request failed.
    Error { code: ErrorCode, message: String },
}

/// What went wrong, as the client must distinguish it. Also the QUIC
/// application error code when a stream is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No such shard.
    NotFound,
    /// Stored bytes fail their checksum; no data was served.
    Corrupt,
    /// The node is out of space.
    Full,
    /// The request was malformed, truncated or stalled.
    BadRequest,
    /// The node failed (I/O error); retry elsewhere.
    Internal,
    /// The node is shutting down; retry elsewhere.
    ShuttingDown,
    /// A range outside the shard.
    InvalidRange,
    /// The peer may not make this request (e.g. a Raft RPC from a
    /// certificate that does not name the claimed sender). Added with v2.
    Forbidden,
    /// The node started with an empty Raft store and takes no part in
    /// Raft until the group's leader has admitted it (it may be a wiped
    /// member; see the node's `meta::admission`). Added with v2.
    NotAdmitted,
    /// A code this build does not know (from a newer peer).
    Other(u8),
}

impl ErrorCode {
    /// Numeric code on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::NotFound => 1,
            Self::Corrupt => 2,
            Self::Full => 3,
            Self::BadRequest => 4,
            Self::Internal => 5,
            Self::ShuttingDown => 6,
            Self::InvalidRange => 7,
            Self::Forbidden => 8,
            Self::NotAdmitted => 9,
            Self::Other(c) => c,
        }
    }

    /// Code from the wire; unknown values are kept as [`ErrorCode::Other`].
    pub fn from_u8(c: u8) -> Self {
        match c {
            1 => Self::NotFound,
            2 => Self::Corrupt,
            3 => Self::Full,
            4 => Self::BadRequest,
            5 => Self::Internal,
            6 => Self::ShuttingDown,
            7 => Self::InvalidRange,
            8 => Self::Forbidden,
            9 => Self::NotAdmitted,
            c => Self::Other(c),
        }
    }
}

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The stream ended inside a frame.
    #[error("truncated frame: stream ended {0}")]
    Truncated(&'static str),
    /// Not a Predastore frame.
    #[error("bad frame magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// A protocol version this build does not speak.
    #[error("unknown protocol version {0}")]
    UnknownVersion(u16),
    /// The declared payload is larger than [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    Oversize(u32),
    /// A message tag this build does not know.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// The payload does not decode as its message.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Reading the stream failed.
    #[error("reading frame: {0}")]
    Io(#[from] std::io::Error),
}

fn frame(payload: BytesMut) -> Bytes {
    frame_v(WIRE_VERSION, payload)
}

fn frame_v(version: u16, payload: BytesMut) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_PREFIX_LEN + payload.len());
    out.put_slice(&FRAME_MAGIC);
    out.put_u16_le(version);
    out.put_u32_le(payload.len() as u32);
    out.put_slice(&payload);
    out.freeze()
}

fn put_shard(b: &mut BytesMut, s: &ShardId) {
    b.put_u128_le(s.object);
    b.put_u32_le(s.chunk);
    b.put_u8(s.index);
}

impl Request {
    /// The whole frame (prefix and payload).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        match self {
            Self::Put { shard, len } => {
                b.put_u8(0x01);
                put_shard(&mut b, shard);
                b.put_u64_le(*len);
            }
            Self::Get { shard, offset, len } => {
                b.put_u8(0x02);
                put_shard(&mut b, shard);
                b.put_u64_le(*offset);
                match len {
                    None => b.put_u8(0),
                    Some(l) => {
                        b.put_u8(1);
                        b.put_u64_le(*l);
                    }
                }
            }
            Self::Delete { shard } => {
                b.put_u8(0x03);
                put_shard(&mut b, shard);
            }
            Self::Stat { shard } => {
                b.put_u8(0x04);
                put_shard(&mut b, shard);
            }
            Self::List { after, limit } => {
                b.put_u8(0x05);
                match after {
                    None => b.put_u8(0),
                    Some(s) => {
                        b.put_u8(1);
                        put_shard(&mut b, s);
                    }
                }
                b.put_u32_le(*limit);
            }
            Self::Usage => b.put_u8(0x06),
        }
        frame(b)
    }

    /// Decodes a payload (the bytes after the prefix).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(payload);
        let req = match r.u8("request tag")? {
            0x01 => Self::Put { shard: r.shard()?, len: r.u64("put length")? },
            0x02 => Self::Get {
                shard: r.shard()?,
                offset: r.u64("get offset")?,
                len: if r.flag("get length")? { Some(r.u64("get length")?) } else { None },
            },
            0x03 => Self::Delete { shard: r.shard()? },
            0x04 => Self::Stat { shard: r.shard()? },
            0x05 => Self::List {
                after: if r.flag("list start")? { Some(r.shard()?) } else { None },
                limit: r.u32("list limit")?,
            },
            0x06 => Self::Usage,
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end("request")?;
        Ok(req)
    }
}

impl Response {
    /// The whole frame (prefix and payload).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64);
        match self {
            Self::Done => b.put_u8(0x80),
            Self::Data { shard_len, offset, len } => {
                b.put_u8(0x81);
                b.put_u64_le(*shard_len);
                b.put_u64_le(*offset);
                b.put_u64_le(*len);
            }
            Self::Stat(info) => {
                b.put_u8(0x82);
                put_shard(&mut b, &info.id);
                b.put_u64_le(info.len);
            }
            Self::List { shards, more } => {
                b.put_u8(0x83);
                b.put_u32_le(shards.len() as u32);
                for s in shards {
                    put_shard(&mut b, &s.id);
                    b.put_u64_le(s.len);
                }
                b.put_u8(u8::from(*more));
            }
            Self::Usage(u) => {
                b.put_u8(0x84);
                for v in [u.capacity, u.available, u.used, u.shards] {
                    b.put_u64_le(v);
                }
            }
            Self::Error { code, message } => put_error(&mut b, *code, message),
        }
        frame(b)
    }

    /// Decodes a payload (the bytes after the prefix).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(payload);
        let resp = match r.u8("response tag")? {
            0x80 => Self::Done,
            0x81 => Self::Data {
                shard_len: r.u64("data shard length")?,
                offset: r.u64("data offset")?,
                len: r.u64("data length")?,
            },
            0x82 => Self::Stat(ShardInfo { id: r.shard()?, len: r.u64("stat length")? }),
            0x83 => {
                let n = r.u32("list count")?;
                if n > MAX_LIST {
                    return Err(WireError::Malformed("list count"));
                }
                let mut shards = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    shards.push(ShardInfo { id: r.shard()?, len: r.u64("list entry")? });
                }
                Self::List { shards, more: r.flag("list more")? }
            }
            0x84 => Self::Usage(Usage {
                capacity: r.u64("usage")?,
                available: r.u64("usage")?,
                used: r.u64("usage")?,
                shards: r.u64("usage")?,
            }),
            0xFF => {
                let (code, message) = r.error()?;
                Self::Error { code, message }
            }
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end("response")?;
        Ok(resp)
    }
}

fn put_error(b: &mut BytesMut, code: ErrorCode, message: &str) {
    b.put_u8(0xFF);
    b.put_u8(code.to_u8());
    let mut m = message;
    // Keep within u16 and the payload limit, on a char boundary.
    while m.len() > 4096 {
        let mut cut = 4096;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m = &m[..cut];
    }
    b.put_u16_le(m.len() as u16);
    b.put_slice(m.as_bytes());
}

/// Which Raft RPC a v2 `Raft` frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRpc {
    /// AppendEntries (also heartbeats).
    AppendEntries,
    /// RequestVote.
    Vote,
    /// One chunk of InstallSnapshot.
    InstallSnapshot,
    /// What the peer knows of the group (asked by a node whose Raft store
    /// is empty, before it takes part).
    Probe,
    /// A node whose Raft store was empty asks the leader to admit it (as a
    /// learner first, if it was a voter).
    Rejoin,
}

impl RaftRpc {
    fn to_u8(self) -> u8 {
        match self {
            Self::AppendEntries => 1,
            Self::Vote => 2,
            Self::InstallSnapshot => 3,
            Self::Probe => 4,
            Self::Rejoin => 5,
        }
    }
    fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(Self::AppendEntries),
            2 => Ok(Self::Vote),
            3 => Ok(Self::InstallSnapshot),
            4 => Ok(Self::Probe),
            5 => Ok(Self::Rejoin),
            _ => Err(WireError::Malformed("raft rpc kind")),
        }
    }
}

/// A version-2 request: Raft between nodes, metadata from gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFrameRequest {
    /// A Raft RPC from node `from`; `len` body bytes follow.
    Raft { from: u64, rpc: RaftRpc, len: u64 },
    /// A metadata request; `len` body bytes follow.
    Meta { len: u64 },
}

/// A version-2 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFrameResponse {
    /// `len` body bytes of the answer follow.
    Reply { len: u64 },
    /// The request was refused before it was served.
    Error { code: ErrorCode, message: String },
}

impl MetaFrameRequest {
    /// The whole frame (prefix and payload), without the body.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32);
        match self {
            Self::Raft { from, rpc, len } => {
                b.put_u8(0x10);
                b.put_u64_le(*from);
                b.put_u8(rpc.to_u8());
                b.put_u64_le(*len);
            }
            Self::Meta { len } => {
                b.put_u8(0x20);
                b.put_u64_le(*len);
            }
        }
        frame_v(WIRE_VERSION_META, b)
    }

    /// Decodes a v2 payload. Bodies over [`MAX_META_BODY`] are refused.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(payload);
        let req = match r.u8("request tag")? {
            0x10 => Self::Raft {
                from: r.u64("raft sender")?,
                rpc: RaftRpc::from_u8(r.u8("raft rpc kind")?)?,
                len: r.body_len()?,
            },
            0x20 => Self::Meta { len: r.body_len()? },
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end("request")?;
        Ok(req)
    }
}

impl MetaFrameResponse {
    /// The whole frame (prefix and payload), without the body.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32);
        match self {
            Self::Reply { len } => {
                b.put_u8(0x90);
                b.put_u64_le(*len);
            }
            Self::Error { code, message } => put_error(&mut b, *code, message),
        }
        frame_v(WIRE_VERSION_META, b)
    }

    /// Decodes a v2 payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader(payload);
        let resp = match r.u8("response tag")? {
            0x90 => Self::Reply { len: r.body_len()? },
            0xFF => {
                let (code, message) = r.error()?;
                Self::Error { code, message }
            }
            t => return Err(WireError::UnknownTag(t)),
        };
        r.end("response")?;
        Ok(resp)
    }
}

/// Checks a frame prefix of either version; returns (version, payload length).
pub fn decode_prefix_any(p: &[u8; FRAME_PREFIX_LEN]) -> Result<(u16, u32), WireError> {
    let magic: [u8; 4] = p[..4].try_into().expect("4 bytes");
    if magic != FRAME_MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([p[4], p[5]]);
    if version != WIRE_VERSION && version != WIRE_VERSION_META {
        return Err(WireError::UnknownVersion(version));
    }
    let len = u32::from_le_bytes(p[6..10].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(WireError::Oversize(len));
    }
    Ok((version, len))
}

/// Reads one frame of either version: (version, payload).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u16, Vec<u8>), WireError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    read_all(r, &mut prefix, "in the frame prefix").await?;
    let (version, len) = decode_prefix_any(&prefix)?;
    let mut payload = vec![0u8; len as usize];
    read_all(r, &mut payload, "in the payload").await?;
    Ok((version, payload))
}

/// Reads one v2 frame's payload (a response to a v2 request).
pub async fn read_payload_v2<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, WireError> {
    match read_frame(r).await? {
        (WIRE_VERSION_META, p) => Ok(p),
        (v, _) => Err(WireError::UnknownVersion(v)),
    }
}

/// Reads exactly `len` body bytes (checked against [`MAX_META_BODY`]).
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: u64) -> Result<Vec<u8>, WireError> {
    if len > MAX_META_BODY {
        return Err(WireError::Malformed("body length"));
    }
    let mut body = vec![0u8; len as usize];
    read_all(r, &mut body, "in the body").await?;
    Ok(body)
}

/// Checks a frame prefix and returns the payload length it declares.
pub fn decode_prefix(p: &[u8; FRAME_PREFIX_LEN]) -> Result<u32, WireError> {
    let magic: [u8; 4] = p[..4].try_into().expect("4 bytes");
    if magic != FRAME_MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([p[4], p[5]]);
    if version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let len = u32::from_le_bytes(p[6..10].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(WireError::Oversize(len));
    }
    Ok(len)
}

/// Splits a whole frame held in memory into its payload (for samples/tests).
pub fn split_frame(frame: &[u8]) -> Result<&[u8], WireError> {
    let prefix: &[u8; FRAME_PREFIX_LEN] = frame
        .get(..FRAME_PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(WireError::Truncated("in the frame prefix"))?;
    let len = decode_prefix(prefix)? as usize;
    let payload = &frame[FRAME_PREFIX_LEN..];
    match payload.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(WireError::Truncated("in the payload")),
        std::cmp::Ordering::Greater => Err(WireError::Malformed("frame: bytes after payload")),
        std::cmp::Ordering::Equal => Ok(payload),
    }
}

/// Reads one frame's payload from a stream. The payload size is checked
/// before anything is allocated, so a hostile prefix cannot pin memory.
pub async fn read_payload<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, WireError> {
    let mut prefix = [0u8; FRAME_PREFIX_LEN];
    read_all(r, &mut prefix, "in the frame prefix").await?;
    let len = decode_prefix(&prefix)?;
    let mut payload = vec![0u8; len as usize];
    read_all(r, &mut payload, "in the payload").await?;
    Ok(payload)
}

async fn read_all<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    at: &'static str,
) -> Result<(), WireError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Truncated(at)),
        Err(e) => Err(WireError::Io(e)),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed(what));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Malformed(what)),
        }
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn shard(&mut self) -> Result<ShardId, WireError> {
        let b = self.take(21, "shard id")?;
        Ok(ShardId {
            object: u128::from_le_bytes(b[..16].try_into().expect("16 bytes")),
            chunk: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
            index: b[20],
        })
    }
    fn body_len(&mut self) -> Result<u64, WireError> {
        let len = self.u64("body length")?;
        if len > MAX_META_BODY {
            return Err(WireError::Malformed("body length over the limit"));
        }
        Ok(len)
    }
    fn error(&mut self) -> Result<(ErrorCode, String), WireError> {
        let code = ErrorCode::from_u8(self.u8("error code")?);
        let n = self.u16("error message")? as usize;
        let m = self.take(n, "error message")?;
        let message =
            String::from_utf8(m.to_vec()).map_err(|_| WireError::Malformed("error text"))?;
        Ok((code, message))
    }
    fn end(&self, what: &'static str) -> Result<(), WireError> {
        if self.0.is_empty() { Ok(()) } else { Err(WireError::Malformed(what)) }
    }
}
