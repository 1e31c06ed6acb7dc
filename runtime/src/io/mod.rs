//! Board I/O: where frames come from ([`source`]) and what the pipelines drive ([`reject`]:
//! the reject arm's pin, generic over `embedded_hal::digital::OutputPin`).

#[cfg(all(feature = "camera", target_os = "linux", target_pointer_width = "64"))]
pub mod camera;
pub mod reconnect;
pub mod reject;
pub mod source;

#[cfg(feature = "gpio")]
pub mod gpio;
