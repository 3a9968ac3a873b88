//! The backends, behind one enum so that calls dispatch statically.

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use self::memory::Memory;

#[derive(Debug)]
pub(crate) enum Backend {
    Memory(Memory),
    #[cfg(feature = "redis")]
    Redis(self::redis::Redis),
}
