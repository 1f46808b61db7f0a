// The VMM's helper threads (store relay, console server).
#pragma once

#include <pthread.h>
#include <signal.h>

#include <thread>
#include <utility>

namespace pvkit::vmm {

// Starts `f` on a new thread with every signal blocked, so that SIGTERM,
// SIGINT and the timeout are always delivered to the vCPU thread, the one
// they must interrupt (a halted vCPU is woken by nothing else). The
// caller's mask is restored whether or not the thread could be started.
template <class F>
std::thread start_helper_thread(F&& f) {
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct Restore {
        const sigset_t* mask;
        ~Restore() { pthread_sigmask(SIG_SETMASK, mask, nullptr); }
    } restore{&old};
    return std::thread(std::forward<F>(f));
}

} // namespace pvkit::vmm
