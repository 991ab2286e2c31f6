//! The rooms table ([`RoomsVTable`]) over the process's [`rooms`](crate::rooms): what the
//! SDK's `Connection::join`/`leave`/`id` and `Rooms` call. Each function adapts ABI codes to
//! the rooms' methods and back; the channel names are looked up in the namespace of the
//! route of the connection passed in.
#![allow(unsafe_code)]

use std::ffi::c_void;

use wshd_sdk::abi::*;

use super::connection::data_kind;
use super::{bytes_of, host_fn};
use bytes::Bytes;

use crate::rooms::{self, ChannelKey, ConnId, MessageId, RoomError, Will};
use crate::ws::session::ConnShared;
use crate::ws::transport::DataKind;

/// The table every plugin's [`HostVTable`] points to.
pub(crate) static ROOMS_VTABLE: RoomsVTable = RoomsVTable {
    size: std::mem::size_of::<RoomsVTable>() as u32,
    conn_id: rooms_conn_id,
    join: rooms_join,
    leave: rooms_leave,
    publish: rooms_publish,
    send_to: rooms_send_to,
    presence: rooms_presence,
    publish_logged: rooms_publish_logged,
    join_since: rooms_join_since,
    join_with_will: rooms_join_with_will,
};

/// # Safety
/// `ctx` is a live connection reference (an `RConn`'s `ctx` the caller holds).
unsafe fn conn<'a>(ctx: *const c_void) -> &'a ConnShared {
    // SAFETY: forwarded contract: the Arc's pointee is alive while the reference is held.
    unsafe { &*ctx.cast::<ConnShared>() }
}

/// The `ROOM_*` code of `r`.
fn room_code(r: Result<(), RoomError>) -> u32 {
    match r {
        Ok(()) => ROOM_OK,
        Err(RoomError::BadName) => ROOM_BAD_NAME,
        Err(RoomError::PresenceTooLarge) => ROOM_PRESENCE_TOO_LARGE,
        Err(RoomError::TooManyChannels) => ROOM_TOO_MANY_CHANNELS,
        Err(RoomError::NotUtf8) => ROOM_NOT_UTF8,
        Err(RoomError::Gone) => ROOM_GONE,
        Err(RoomError::BadId) => ROOM_BAD_ID,
        Err(RoomError::Unavailable) => ROOM_UNAVAILABLE,
    }
}

/// The channel `name` (plugin bytes) in the namespace of `shared`'s route (or the shared
/// one, when the route opted into it).
fn channel_of(shared: &ConnShared, name: &[u8]) -> Result<ChannelKey, RoomError> {
    let name = std::str::from_utf8(name).map_err(|_| RoomError::BadName)?;
    rooms::channel_of(shared, name)
}

/// The message id `id` (plugin bytes).
fn message_id(id: &[u8]) -> Result<MessageId, RoomError> {
    MessageId::new(std::str::from_utf8(id).map_err(|_| RoomError::BadId)?)
}

host_fn! {
    fn rooms_conn_id(ctx: *const c_void, out: *mut RConnId) -> u32 {
        // SAFETY: a live connection reference (ABI contract).
        let shared = unsafe { conn(ctx) };
        match rooms::member_of(shared) {
            Ok(member) => {
                let id = member.id();
                // SAFETY: `out` is a valid place provided by the caller for this call.
                unsafe { out.write(RConnId { node: id.node, seq: id.seq }) };
                ROOM_OK
            }
            Err(e) => room_code(Err(e)),
        }
    } else ROOM_GONE
}

host_fn! {
    fn rooms_join(ctx: *const c_void, channel: RStr, presence: RStr) -> u32 {
        // SAFETY: a live connection reference; the strings are valid for the call (copied).
        let (shared, name, presence) = unsafe { (conn(ctx), bytes_of(channel), bytes_of(presence)) };
        room_code(channel_of(shared, name).and_then(|key| rooms::member_of(shared)?.join(&key, presence)))
    } else ROOM_GONE
}

host_fn! {
    fn rooms_leave(ctx: *const c_void, channel: RStr) -> u32 {
        // SAFETY: a live connection reference; the name is valid for the call.
        let (shared, name) = unsafe { (conn(ctx), bytes_of(channel)) };
        // Not `member_of`: a handler leaving after the peer's close must still leave (its
        // will is for connections that end as members), and one that never joined has
        // nothing to leave.
        let left = channel_of(shared, name).map(|key| rooms::existing_member_of(shared).is_some_and(|m| m.leave(&key)));
        match left {
            Ok(true) => ROOM_OK,
            Ok(false) => ROOM_NOT_MEMBER,
            Err(e) => room_code(Err(e)),
        }
    } else ROOM_GONE
}

/// The code of a publish, writing how many members it reached to `delivered` on success.
///
/// # Safety
/// `delivered` is null or valid for a write of a `u64`.
unsafe fn counted_code(published: Result<usize, RoomError>, delivered: *mut u64) -> u32 {
    match published {
        Ok(count) => {
            if !delivered.is_null() {
                // SAFETY: not null, and valid per this function's contract.
                unsafe { delivered.write(count as u64) };
            }
            ROOM_OK
        }
        Err(e) => room_code(Err(e)),
    }
}

host_fn! {
    fn rooms_publish(ctx: *const c_void, channel: RStr, kind: u8, data: RStr, delivered: *mut u64) -> u32 {
        let Some(kind) = data_kind(kind) else { return ROOM_INVALID };
        // SAFETY: a live connection reference; the strings are valid for the call (copied).
        let (shared, name, data) = unsafe { (conn(ctx), bytes_of(channel), bytes_of(data)) };
        let published = channel_of(shared, name).and_then(|key| rooms::global().publish(&key, kind, data));
        // SAFETY: `delivered` is null or a valid place provided by the caller for this call.
        unsafe { counted_code(published, delivered) }
    } else ROOM_GONE
}

host_fn! {
    fn rooms_send_to(id: RConnId, kind: u8, data: RStr) -> u32 {
        let Some(kind) = data_kind(kind) else { return ROOM_INVALID };
        // SAFETY: `data` is valid for the call (copied inside).
        let data = unsafe { bytes_of(data) };
        room_code(rooms::global().send_to(ConnId { node: id.node, seq: id.seq }, kind, data))
    } else ROOM_GONE
}

host_fn! {
    fn rooms_presence(
        ctx: *const c_void,
        channel: RStr,
        out: *mut c_void,
        push: unsafe extern "C" fn(out: *mut c_void, id: RConnId, presence: RStr),
    ) -> u32 {
        // SAFETY: a live connection reference; the name is valid for the call.
        let (shared, name) = unsafe { (conn(ctx), bytes_of(channel)) };
        let key = match channel_of(shared, name) {
            Ok(key) => key,
            Err(e) => return room_code(Err(e)),
        };
        for (id, presence) in rooms::global().presence_everywhere(&key) {
            let id = RConnId { node: id.node, seq: id.seq };
            // SAFETY: the plugin's callback with its own `out`; the record outlives the call.
            unsafe { push(out, id, RStr::from_bytes(&presence)) };
        }
        ROOM_OK
    } else ROOM_GONE
}

host_fn! {
    fn rooms_publish_logged(
        ctx: *const c_void,
        channel: RStr,
        id: RStr,
        kind: u8,
        data: RStr,
        delivered: *mut u64,
    ) -> u32 {
        let Some(kind) = data_kind(kind) else { return ROOM_INVALID };
        // SAFETY: a live connection reference; the strings are valid for the call (copied).
        let (shared, name, id, data) = unsafe { (conn(ctx), bytes_of(channel), bytes_of(id), bytes_of(data)) };
        let published = channel_of(shared, name).and_then(|key| {
            let id = message_id(id)?;
            rooms::global().publish_logged(&key, kind, data, id, rooms::history_limits(shared))
        });
        // SAFETY: `delivered` is null or a valid place provided by the caller for this call.
        unsafe { counted_code(published, delivered) }
    } else ROOM_GONE
}

host_fn! {
    fn rooms_join_since(ctx: *const c_void, channel: RStr, presence: RStr, since: RStr, found: *mut u8) -> u32 {
        // SAFETY: a live connection reference; the strings are valid for the call (copied).
        let (shared, name, presence, since) =
            unsafe { (conn(ctx), bytes_of(channel), bytes_of(presence), bytes_of(since)) };
        // An id that is not UTF-8 was never logged: nothing to replay.
        let since = std::str::from_utf8(since).unwrap_or("");
        let joined = channel_of(shared, name)
            .and_then(|key| rooms::member_of(shared)?.join_since(&key, presence, since));
        // SAFETY: `found` is null or a valid place provided by the caller for this call.
        unsafe { found_code(joined, found) }
    } else ROOM_GONE
}

host_fn! {
    fn rooms_join_with_will(
        ctx: *const c_void,
        channel: RStr,
        presence: RStr,
        since: RStr,
        will_kind: u8,
        will: RStr,
        found: *mut u8,
    ) -> u32 {
        let will_kind = match will_kind {
            0 => None,
            kind => match data_kind(kind) {
                Some(kind) => Some(kind),
                None => return ROOM_INVALID,
            },
        };
        // SAFETY: a live connection reference; the strings are valid for the call (copied).
        let (shared, name, presence, since, will) =
            unsafe { (conn(ctx), bytes_of(channel), bytes_of(presence), bytes_of(since), bytes_of(will)) };
        let will = will_kind.map(|kind| Will { kind, data: Bytes::copy_from_slice(will) });
        if let Some(Will { kind: DataKind::Text, data }) = &will
            && std::str::from_utf8(data).is_err()
        {
            return ROOM_NOT_UTF8;
        }
        // An id that is not UTF-8 was never logged: nothing to replay.
        let since = std::str::from_utf8(since).unwrap_or("\u{0}");
        let since = Some(since).filter(|s| !s.is_empty());
        let joined =
            channel_of(shared, name).and_then(|key| rooms::member_of(shared)?.enter(&key, presence, will, since));
        // SAFETY: `found` is null or a valid place provided by the caller for this call.
        unsafe { found_code(joined, found) }
    } else ROOM_GONE
}

/// The `ROOM_*` code of a join that may replay, writing whether `since` was found.
///
/// # Safety
/// `found` is null or valid for a write.
unsafe fn found_code(joined: Result<bool, RoomError>, found: *mut u8) -> u32 {
    match joined {
        Ok(was_found) => {
            if !found.is_null() {
                // SAFETY: forwarded contract.
                unsafe { found.write(u8::from(was_found)) };
            }
            ROOM_OK
        }
        Err(e) => room_code(Err(e)),
    }
}
