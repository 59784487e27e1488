//! Shared pieces of the runnable examples: the flags every example takes ([`flags`]), the fetched
//! assets they default to ([`assets`]), image data
//! ([`image_data`]) and evaluation ([`image_eval`]), the run SimCLR and MoCo share
//! ([`image_training`]), `--init` weights ([`pretrained`]), the processes of a run under mpirun ([`processes`]), what a run leaves ([`report`]) and what it records of
//! its flags ([`run_record`]).
//!
//! The examples themselves are the binaries: `quickstart`, `simclr`, `moco`, `byol`, `simsiam`,
//! `barlow_twins`, `vicreg`, `dino` ([`image_method`]: what the last five share), `simcse`,
//! `graphcl`, `molecule_clip`, `augment_preview`
//! (`cargo run --release -p contrastive-examples --bin quickstart`); each folder has a README.

pub mod assets;
pub mod flags;
pub mod image_data;
pub mod image_eval;
pub mod image_method;
pub mod image_training;
pub mod pretrained;
pub mod processes;
pub mod recipe;
pub mod report;
pub mod run_record;

// The workspace README's example runs as a doctest here, where every crate is at hand.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadmeDoctests;
