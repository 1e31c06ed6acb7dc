//! Board I/O: where frames come from ([`source`]) and what the pipelines drive ([`reject`]:
//! the reject arm's pin, generic over `embedded_hal::digital::OutputPin`).

pub mod reject;
pub mod source;

#[cfg(feature = "gpio")]
pub mod gpio;
