//! Just enough ZMTP 3.x to judge what an untrusted peer sends: a streaming inspector that
//! checks the greeting and every frame header, and skips frame bodies without looking at them.
//!
//! It holds no socket and no buffer: [`Inspector::feed`] takes bytes in whatever chunks they
//! arrive and answers whether the stream is still acceptable. Every verdict is taken on a
//! header alone, before the body it announces has arrived, so nothing large is ever held.
//!
//! The wire format (RFC 23/ZMTP and RFC 37/ZMTP 3.1): a 64-byte greeting — signature `0xFF`,
//! eight padding bytes, `0x7F`; version major and minor; a 20-byte mechanism name padded with
//! zeros; an as-server byte; 31 filler bytes — then frames, each a flags byte (bit 0 MORE,
//! bit 1 LONG, bit 2 COMMAND), a size (one byte, or eight big-endian with LONG) and the body.
//! zmq.rs 0.7 and libzmq both send version 3.0 or 3.1 with mechanism `NULL`, then a READY
//! command of a few dozen bytes.

use std::fmt;

/// Length of the ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;

/// Where the mechanism name sits in the greeting.
const MECHANISM_AT: usize = 12;
/// The only mechanism accepted: `NULL`, zero-padded to 20 bytes.
const NULL_MECHANISM: &[u8; 20] = b"NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

const MORE: u8 = 0b001;
const LONG: u8 = 0b010;
const COMMAND: u8 = 0b100;

/// Why the inspector refused a stream. Each maps to a `reason` label of `guard_cut_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// The greeting's signature is wrong or its major version is not 3.
    BadGreeting,
    /// The greeting names a mechanism other than NULL (PLAIN, CURVE, anything else).
    Mechanism,
    /// A flags byte has bits beyond MORE, LONG and COMMAND, or a command claims MORE.
    BadFlags,
    /// A command frame is larger than commands ever are.
    OversizeCommand,
    /// One message frame is larger than the message limit.
    OversizeFrame,
    /// The frames of one multipart message add up to more than the message limit.
    OversizeMessage,
}

impl Violation {
    /// The metric label for this violation.
    pub const fn as_str(self) -> &'static str {
        match self {
            Violation::BadGreeting => "bad_greeting",
            Violation::Mechanism => "mechanism",
            Violation::BadFlags => "bad_flags",
            Violation::OversizeCommand => "oversize_command",
            Violation::OversizeFrame => "oversize_frame",
            Violation::OversizeMessage => "oversize_message",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sizes an inspector enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest message accepted: one frame, or all frames of a multipart message together.
    pub max_message_bytes: u64,
    /// Largest command frame accepted (READY, SUBSCRIBE, PING and their kind are tiny).
    pub max_command_bytes: u64,
}

/// Where in the stream the inspector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `seen` bytes of the greeting have passed.
    Greeting { seen: usize },
    /// The next byte is a frame's flags.
    Flags,
    /// Reading a frame's size: `seen` of its `len` bytes have been folded into `value`.
    Size {
        flags: u8,
        len: u8,
        seen: u8,
        value: u64,
    },
    /// Skipping a frame's body.
    Body { flags: u8, remaining: u64 },
    /// The stream was refused; it stays refused.
    Refused(Violation),
}

/// A streaming ZMTP 3 inspector for one direction of one connection.
#[derive(Debug, Clone)]
pub struct Inspector {
    limits: FrameLimits,
    state: State,
    /// Bytes of the current multipart message so far (frames before the current one included).
    message_bytes: u64,
    /// Bytes accepted so far; on a refusal, the offset of the byte that was refused.
    position: u64,
    handshake_done: bool,
}

impl Inspector {
    /// An inspector at the start of a connection, expecting the greeting.
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            limits,
            state: State::Greeting { seen: 0 },
            message_bytes: 0,
            position: 0,
            handshake_done: false,
        }
    }

    /// True once the greeting and the first command (READY, for the NULL mechanism) have
    /// passed in full.
    pub fn handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// Bytes accepted so far; after a refusal, the offset of the refused byte.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Takes the next bytes of the stream. `Ok` means all of them may be forwarded; after an
    /// `Err` the stream must be cut, and every later call returns the same error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if let State::Body { flags, remaining } = self.state {
                // Bodies are skipped whole, however they are split: no per-byte work.
                let take = remaining.min(rest.len() as u64);
                rest = &rest[take as usize..];
                self.position += take;
                if take == remaining {
                    self.end_frame(flags);
                } else {
                    self.state = State::Body {
                        flags,
                        remaining: remaining - take,
                    };
                }
                continue;
            }
            self.state = self.step(rest[0])?;
            self.position += 1;
            rest = &rest[1..];
        }
        match self.state {
            State::Refused(violation) => Err(violation),
            _ => Ok(()),
        }
    }

    /// The state after one header byte, or the violation it commits (which also sticks).
    fn step(&mut self, byte: u8) -> Result<State, Violation> {
        let next = match self.state {
            State::Greeting { seen } => self.greeting_byte(seen, byte),
            State::Flags => Self::flags_byte(byte),
            State::Size {
                flags,
                len,
                seen,
                value,
            } => {
                let value = (value << 8) | u64::from(byte);
                if seen + 1 < len {
                    Ok(State::Size {
                        flags,
                        len,
                        seen: seen + 1,
                        value,
                    })
                } else {
                    self.frame_size(flags, value)
                }
            }
            State::Body { .. } => Ok(self.state),
            State::Refused(violation) => Err(violation),
        };
        next.inspect_err(|&violation| self.state = State::Refused(violation))
    }

    fn greeting_byte(&self, seen: usize, byte: u8) -> Result<State, Violation> {
        let ok = match seen {
            0 => byte == 0xFF,
            9 => byte == 0x7F,
            10 => byte == 3,
            at if (MECHANISM_AT..MECHANISM_AT + NULL_MECHANISM.len()).contains(&at) => {
                if byte != NULL_MECHANISM[at - MECHANISM_AT] {
                    return Err(Violation::Mechanism);
                }
                true
            }
            // Padding, minor version, as-server and filler: any value is legal.
            _ => true,
        };
        if !ok {
            return Err(Violation::BadGreeting);
        }
        Ok(if seen + 1 == GREETING_LEN {
            State::Flags
        } else {
            State::Greeting { seen: seen + 1 }
        })
    }

    fn flags_byte(flags: u8) -> Result<State, Violation> {
        let unknown = flags & !(MORE | LONG | COMMAND) != 0;
        // RFC 37: "For command frames, [MORE] SHALL be zero."
        let continued_command = flags & COMMAND != 0 && flags & MORE != 0;
        if unknown || continued_command {
            return Err(Violation::BadFlags);
        }
        let len = if flags & LONG != 0 { 8 } else { 1 };
        Ok(State::Size {
            flags,
            len,
            seen: 0,
            value: 0,
        })
    }

    /// Judges a frame by its announced size, before any of its body arrives.
    fn frame_size(&mut self, flags: u8, size: u64) -> Result<State, Violation> {
        if flags & COMMAND != 0 {
            if size > self.limits.max_command_bytes {
                return Err(Violation::OversizeCommand);
            }
        } else {
            if size > self.limits.max_message_bytes {
                return Err(Violation::OversizeFrame);
            }
            let total = self.message_bytes.saturating_add(size);
            if total > self.limits.max_message_bytes {
                return Err(Violation::OversizeMessage);
            }
            self.message_bytes = total;
        }
        if size == 0 {
            self.end_frame(flags);
            return Ok(self.state);
        }
        Ok(State::Body {
            flags,
            remaining: size,
        })
    }

    fn end_frame(&mut self, flags: u8) {
        if flags & COMMAND != 0 {
            self.handshake_done = true;
        } else if flags & MORE == 0 {
            self.message_bytes = 0;
        }
        self.state = State::Flags;
    }
}

#[cfg(test)]
mod tests;
