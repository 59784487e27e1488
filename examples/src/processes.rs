//! The processes of a run: one, or with the feature `mpi` as many as `mpirun -np N` starts.
//! Every process trains on its share of each global batch; rank 0 alone evaluates, plots, saves
//! and prints the figures.

use contrastive_core::collective::{Collective, Local};
use contrastive_core::data::Shard;
use contrastive_core::{Error, Result};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// The run's processes, opened by the first [`collective`] call (MPI is initialised there)
    /// and closed by [`end`] (MPI is finalised there).
    static WORLD: RefCell<Option<Arc<dyn Collective>>> = const { RefCell::new(None) };
}

/// The number of processes mpirun started, read from the environment of Open MPI, MPICH or a
/// PMIx launcher; `None` when no launcher started this process.
fn launched_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(|v| v.parse().ok()))
}

/// This process's rank as the launcher numbered it (Open MPI, MPICH, PMIx); 0 without one.
fn launched_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// For the programs that do not train (they write their files once): whether this process does
/// the work, on its own or as the first of those mpirun started (the others have nothing to do
/// and end at once).
pub fn first_launched() -> bool {
    launched_rank() == 0
}

/// The run's processes: [`Local`] for a process on its own, MPI's world under mpirun.
pub fn collective() -> Result<Arc<dyn Collective>> {
    WORLD.with(|world| {
        let mut world = world.borrow_mut();
        if let Some(c) = world.as_ref() {
            return Ok(Arc::clone(c));
        }
        let opened = open()?;
        *world = Some(Arc::clone(&opened));
        Ok(opened)
    })
}

/// [`collective`], with every BatchNorm layer normalising over the processes' global batch when
/// `sync_batch_norm` (SyncBatchNorm: the examples' `--sync-batch-norm`).
pub fn collective_with_batch_norm(sync_batch_norm: bool) -> Result<Arc<dyn Collective>> {
    let c = collective()?;
    if sync_batch_norm {
        contrastive_core::collective::set_sync_batch_norm(Some(Arc::clone(&c)));
    }
    Ok(c)
}

#[cfg(feature = "mpi")]
fn open() -> Result<Arc<dyn Collective>> {
    // Without a launcher MPI is not initialised at all (Open MPI's singleton start would begin
    // its own daemon).
    Ok(match launched_world_size() {
        Some(_) => Arc::new(contrastive_core::collective::Mpi::init()?),
        None => Arc::new(Local),
    })
}

#[cfg(not(feature = "mpi"))]
fn open() -> Result<Arc<dyn Collective>> {
    match launched_world_size() {
        Some(n) if n > 1 => Err(Error::config(
            "mpi",
            format!("started by mpirun as one of {n} processes, but this build has no MPI: build with --features mpi"),
        )),
        _ => Ok(Arc::new(Local)),
    }
}

/// This process's share of each global batch, under the same rule as [`for_trainer`].
pub fn shard() -> Result<Shard> {
    let c = for_trainer()?;
    Ok(Shard { rank: c.rank(), world_size: c.world_size() })
}

/// The collective for a trainer: the run's processes if this example opened them with
/// [`collective`], else an error under mpirun with several processes (an example whose method
/// does not yet see the global batch would train N unrelated halves), else one process.
pub fn for_trainer() -> Result<Arc<dyn Collective>> {
    if let Some(c) = WORLD.with(|w| w.borrow().clone()) {
        return Ok(c);
    }
    match launched_world_size() {
        Some(n) if n > 1 => Err(Error::config(
            "mpi",
            format!(
                "started as one of {n} processes, but this program trains on one process only (it does not open the run's processes with examples::processes::collective)"
            ),
        )),
        _ => Ok(Arc::new(Local)),
    }
}

/// The number of processes and this one's rank: (1, 0) when no collective was opened.
pub fn world() -> (usize, usize) {
    WORLD.with(|w| w.borrow().as_ref().map_or((1, 0), |c| (c.world_size(), c.rank())))
}

/// Whether this process reports (rank 0, or the only process).
pub fn is_leader() -> bool {
    world().1 == 0
}

/// Closes the run's processes (MPI is finalised when the last handle goes).
pub fn end() {
    contrastive_core::collective::set_sync_batch_norm(None);
    WORLD.with(|w| w.borrow_mut().take());
}
