//! Safe wrappers over the host's rooms table ([`RoomsVTable`]), for [`crate::rooms`].

use std::ffi::c_void;

use super::RawConn;
use super::host;
use crate::abi::*;

/// The host's rooms table, when the host has one: the services table's `size` must cover
/// the appended `rooms` pointer, the pointer must be set, and the rooms table's own `size`
/// must cover its first entries (up to `presence`; see [`has`] for the appended ones).
fn table() -> Option<&'static RoomsVTable> {
    let services = host::table()?;
    let end = std::mem::offset_of!(HostVTable, rooms) + std::mem::size_of::<*const RoomsVTable>();
    if (services.size as usize) < end || services.rooms.is_null() {
        return None;
    }
    // SAFETY: a host table pointer within the size the host declared; the host keeps its
    // tables alive while this library is loaded.
    let rooms = unsafe { &*services.rooms };
    (rooms.size as usize >= ROOMS_VTABLE_V1_SIZE).then_some(rooms)
}

/// The host's rooms table when its `size` covers the appended entry ending at `end`
/// (`offset_of!` + the pointer's size).
fn table_with(end: usize) -> Option<&'static RoomsVTable> {
    table().filter(|t| t.size as usize >= end)
}

/// The end of the appended `publish_logged` entry.
const PUBLISH_LOGGED_END: usize =
    std::mem::offset_of!(RoomsVTable, publish_logged) + std::mem::size_of::<usize>();
/// The end of the appended `join_since` entry.
const JOIN_SINCE_END: usize = std::mem::offset_of!(RoomsVTable, join_since) + std::mem::size_of::<usize>();

/// The end of the appended `join_with_will` entry.
const JOIN_WITH_WILL_END: usize =
    std::mem::offset_of!(RoomsVTable, join_with_will) + std::mem::size_of::<usize>();

/// `ROOM_GONE` when the host has no rooms (an older host).
const NO_ROOMS: u32 = u32::MAX;

impl RawConn {
    /// The connection's id, or a `ROOM_*` code.
    pub(crate) fn room_id(&self) -> Result<RConnId, u32> {
        let Some(t) = table() else { return Err(NO_ROOMS) };
        let mut out = RConnId { node: 0, seq: 0 };
        // SAFETY: host function with a live connection reference; `out` is a valid place.
        match unsafe { (t.conn_id)(self.ctx, &mut out) } {
            ROOM_OK => Ok(out),
            code => Err(code),
        }
    }

    /// Joins `channel` with `presence`: a `ROOM_*` code.
    pub(crate) fn room_join(&self, channel: &str, presence: &[u8]) -> u32 {
        let Some(t) = table() else { return NO_ROOMS };
        // SAFETY: host function with a live connection reference; it copies the strings.
        unsafe { (t.join)(self.ctx, RStr::from_bytes(channel.as_bytes()), RStr::from_bytes(presence)) }
    }

    /// Leaves `channel`: a `ROOM_*` code.
    pub(crate) fn room_leave(&self, channel: &str) -> u32 {
        let Some(t) = table() else { return NO_ROOMS };
        // SAFETY: host function with a live connection reference; the name outlives the call.
        unsafe { (t.leave)(self.ctx, RStr::from_bytes(channel.as_bytes())) }
    }

    /// Publishes `data` (`MSG_*` `kind`) to `channel`: the members reached, or a `ROOM_*` code.
    pub(crate) fn room_publish(&self, channel: &str, kind: u8, data: &[u8]) -> Result<u64, u32> {
        let Some(t) = table() else { return Err(NO_ROOMS) };
        let mut delivered = 0u64;
        let channel = RStr::from_bytes(channel.as_bytes());
        // SAFETY: host function with a live connection reference; it copies `data`;
        // `delivered` is a valid place.
        match unsafe { (t.publish)(self.ctx, channel, kind, RStr::from_bytes(data), &mut delivered) } {
            ROOM_OK => Ok(delivered),
            code => Err(code),
        }
    }

    /// Publishes `data` to `channel` and logs it under `id`: the members reached, or a
    /// `ROOM_*` code.
    pub(crate) fn room_publish_logged(
        &self,
        channel: &str,
        id: &str,
        kind: u8,
        data: &[u8],
    ) -> Result<u64, u32> {
        let Some(t) = table_with(PUBLISH_LOGGED_END) else { return Err(NO_ROOMS) };
        let mut delivered = 0u64;
        let (channel, id) = (RStr::from_bytes(channel.as_bytes()), RStr::from_bytes(id.as_bytes()));
        // SAFETY: host function (the table's size covers it) with a live connection
        // reference; it copies the strings; `delivered` is a valid place.
        match unsafe {
            (t.publish_logged)(self.ctx, channel, id, kind, RStr::from_bytes(data), &mut delivered)
        } {
            ROOM_OK => Ok(delivered),
            code => Err(code),
        }
    }

    /// Joins `channel` and replays its history after `since`: whether `since` was found,
    /// or a `ROOM_*` code.
    pub(crate) fn room_join_since(&self, channel: &str, presence: &[u8], since: &str) -> Result<bool, u32> {
        let Some(t) = table_with(JOIN_SINCE_END) else { return Err(NO_ROOMS) };
        let mut found = 0u8;
        let (channel, since) = (RStr::from_bytes(channel.as_bytes()), RStr::from_bytes(since.as_bytes()));
        // SAFETY: host function (the table's size covers it) with a live connection
        // reference; it copies the strings; `found` is a valid place.
        match unsafe { (t.join_since)(self.ctx, channel, RStr::from_bytes(presence), since, &mut found) } {
            ROOM_OK => Ok(found != 0),
            code => Err(code),
        }
    }

    /// Joins `channel` (replaying after `since` unless it is empty) with a will of `MSG_*`
    /// `will_kind`: whether `since` was found, or a `ROOM_*` code.
    pub(crate) fn room_join_with_will(
        &self,
        channel: &str,
        presence: &[u8],
        since: &str,
        will_kind: u8,
        will: &[u8],
    ) -> Result<bool, u32> {
        let Some(t) = table_with(JOIN_WITH_WILL_END) else { return Err(NO_ROOMS) };
        let mut found = 0u8;
        let (channel, since) = (RStr::from_bytes(channel.as_bytes()), RStr::from_bytes(since.as_bytes()));
        let (presence, will) = (RStr::from_bytes(presence), RStr::from_bytes(will));
        // SAFETY: host function (the table's size covers it) with a live connection
        // reference; it copies the strings; `found` is a valid place.
        match unsafe { (t.join_with_will)(self.ctx, channel, presence, since, will_kind, will, &mut found) } {
            ROOM_OK => Ok(found != 0),
            code => Err(code),
        }
    }

    /// The members of `channel` (id and presence record), or a `ROOM_*` code.
    pub(crate) fn room_presence(&self, channel: &str) -> Result<Vec<(RConnId, Vec<u8>)>, u32> {
        let Some(t) = table() else { return Err(NO_ROOMS) };
        let mut members: Vec<(RConnId, Vec<u8>)> = Vec::new();
        let out = (&mut members as *mut Vec<(RConnId, Vec<u8>)>).cast::<c_void>();
        // SAFETY: host function with a live connection reference; `push` gets back `out`, a
        // live vector, during this call only.
        match unsafe { (t.presence)(self.ctx, RStr::from_bytes(channel.as_bytes()), out, push_member) } {
            ROOM_OK => Ok(members),
            code => Err(code),
        }
    }
}

/// Sends `data` (`MSG_*` `kind`) to the connection `id`: a `ROOM_*` code.
pub(crate) fn room_send_to(id: RConnId, kind: u8, data: &[u8]) -> u32 {
    let Some(t) = table() else { return NO_ROOMS };
    // SAFETY: host function; it copies `data` before returning.
    unsafe { (t.send_to)(id, kind, RStr::from_bytes(data)) }
}

/// The presence callback: appends a member to the vector behind `out`.
///
/// # Safety
/// `out` is the `Vec` passed to the host's `presence`; `presence` is valid for the call.
unsafe extern "C" fn push_member(out: *mut c_void, id: RConnId, presence: RStr) {
    // SAFETY: forwarded contract.
    let (members, record) = unsafe { (&mut *out.cast::<Vec<(RConnId, Vec<u8>)>>(), presence.as_bytes()) };
    // A panic must not unwind into the host (a capacity overflow is the only one possible).
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        members.push((id, record.unwrap_or_default().to_vec()));
    }));
}
