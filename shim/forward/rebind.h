// `migctl migrate --rebind`, the shim's part: for a service fronted by a load balancer
// or a virtual IP, whose clients find it again by themselves, the job should live on
// the new host's network instead of keeping it at home. Right after the restore,
// before any application thread runs, every TCP socket the job has at home is taken
// over here under the same fd number:
//   - a listening one by a new listening socket on this host, at the same port on
//     every address (its backlog at home is dropped);
//   - a connection by a closed one (reads give end of file, writes EPIPE), while at
//     home it is closed with SO_LINGER 0, so its peer sees a reset and reconnects.
// The epoll registrations of the fd move to the new socket. Other sockets (UDP, Unix),
// pipes, terminals and files stay at home as always.
#pragma once

namespace mig::forward {

// From the control thread, forwarding active, every other thread parked.
void rebindSockets();

}  // namespace mig::forward
