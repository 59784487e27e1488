//! Where a run's tensors live, as a user names it: `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
//! CUDA and Metal need a build with the workspace's `cuda` or `metal` feature (each crate forwards
//! it to candle's); opening one without says so and how to get it.

use crate::error::{Error, Result};
use candle_core::Device;
use std::fmt;
use std::str::FromStr;

/// A device by name, before it is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (the fused kernels run here).
    #[default]
    Cpu,
    /// NVIDIA GPU number N (feature `cuda`).
    Cuda(usize),
    /// Apple GPU number N (feature `metal`).
    Metal(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((kind, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    Error::config("--device", format!("{s:?}: the part after ':' must be a GPU number, such as cuda:1"))
                })?;
                (kind, n)
            }
            None => (s, 0),
        };
        match (kind, s.contains(':')) {
            ("cpu", false) => Ok(DeviceSpec::Cpu),
            ("cuda", _) => Ok(DeviceSpec::Cuda(ordinal)),
            ("metal", _) => Ok(DeviceSpec::Metal(ordinal)),
            _ => Err(Error::config("--device", format!("{s:?}: expected cpu, cuda, cuda:N, metal or metal:N"))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl DeviceSpec {
    /// Opens the device: an error that names it, and for a GPU this build cannot drive, the
    /// feature to build with.
    pub fn open(self) -> Result<Device> {
        let opened = match self {
            DeviceSpec::Cpu => return Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => Device::new_cuda(n),
            DeviceSpec::Metal(n) => Device::new_metal(n),
        };
        opened.map_err(|e| {
            let (feature, built) = match self {
                DeviceSpec::Cuda(_) => ("cuda", cfg!(feature = "cuda")),
                _ => ("metal", cfg!(feature = "metal")),
            };
            let hint = if built {
                "is the GPU there and its driver installed?".to_string()
            } else {
                format!("this build has no {feature} support: build with `--features {feature}`")
            };
            Error::config("--device", format!("{self}: {e}; {hint}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceSpec;

    #[test]
    fn names_parse_print_and_open() {
        for (name, spec, printed) in [
            ("cpu", DeviceSpec::Cpu, "cpu"),
            ("cuda", DeviceSpec::Cuda(0), "cuda:0"),
            ("cuda:3", DeviceSpec::Cuda(3), "cuda:3"),
            ("metal", DeviceSpec::Metal(0), "metal:0"),
            ("metal:1", DeviceSpec::Metal(1), "metal:1"),
        ] {
            let parsed: DeviceSpec = name.parse().unwrap();
            assert_eq!(parsed, spec);
            assert_eq!(parsed.to_string(), printed);
            assert_eq!(printed.parse::<DeviceSpec>().unwrap(), spec);
        }
        for bad in ["gpu", "cpu:0", "cuda:x", "", "CUDA"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains("--device") && e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        // This build has neither GPU feature: opening one says which feature to build with.
        if !cfg!(feature = "cuda") {
            let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("cuda:0") && e.contains("--features cuda"), "{e}");
        }
        if !cfg!(feature = "metal") {
            let e = DeviceSpec::Metal(0).open().unwrap_err().to_string();
            assert!(e.contains("--features metal"), "{e}");
        }
    }
}
