//! [`Collective`] over MPI (Open MPI or MPICH, through the `mpi` crate): run the program under
//! `mpirun -np N`; without mpirun it is a world of one.

use super::Collective;
use crate::error::{Error, Result};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Count;

/// The MPI world of this run. MPI is initialised by [`Mpi::init`] and finalised when this is
/// dropped; collective calls come from one thread (the training loop's).
pub struct Mpi {
    world: SimpleCommunicator,
    // Dropped last: finalises MPI.
    _universe: Universe,
    thread: std::thread::ThreadId,
    rank: usize,
    size: usize,
}

// SAFETY: MPI is initialised with MPI_THREAD_FUNNELED (only the thread that initialised it makes
// MPI calls), and every method below checks that it runs on that thread before touching the
// communicator; other threads may hold the value but not use MPI through it.
unsafe impl Send for Mpi {}
// SAFETY: as for Send: all use goes through the thread check.
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI for this process (once per process).
    pub fn init() -> Result<Self> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| Error::config("mpi", "MPI was already initialised in this process"))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Self { world, _universe: universe, thread: std::thread::current().id(), rank, size })
    }

    fn on_its_thread(&self) -> Result<()> {
        if std::thread::current().id() == self.thread {
            Ok(())
        } else {
            Err(Error::config("mpi", "a collective operation from a thread other than the one that initialised MPI"))
        }
    }
}

impl Drop for Mpi {
    /// A process that panics with MPI open ends every process: MPI_Finalize (what dropping the
    /// universe calls) would wait for the others, which wait in a collective operation for it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("rank {} of {}: panicked; ending every process of the run", self.rank, self.size);
            self.world.abort(101)
        }
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        self.on_its_thread()?;
        let send = values.to_vec();
        self.world.all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.on_its_thread()?;
        let world = self.world_size();
        let len = Count::try_from(local.len()).map_err(|_| {
            Error::config("collective.all_gather", format!("{} values exceed MPI's count", local.len()))
        })?;
        let mut counts = vec![0 as Count; world];
        self.world.all_gather_into(&len, &mut counts[..]);
        let displs: Vec<Count> = counts.iter().scan(0, |at, &c| Some(std::mem::replace(at, *at + c))).collect();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut all = vec![0f32; total];
        let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
        self.world.all_gather_varcount_into(local, &mut partition);
        let mut parts = Vec::with_capacity(world);
        for (&at, &count) in displs.iter().zip(&counts) {
            parts.push(all[at as usize..(at + count) as usize].to_vec());
        }
        Ok(parts)
    }
    fn broadcast(&self, values: &mut [f32], root: usize) -> Result<()> {
        self.on_its_thread()?;
        if root >= self.world_size() {
            return Err(Error::config("collective.root", format!("rank {root} of a world of {}", self.world_size())));
        }
        self.world.process_at_rank(root as i32).broadcast_into(values);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.on_its_thread()?;
        self.world.barrier();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
