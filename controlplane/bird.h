// SPDX-License-Identifier: Apache-2.0
// Telling BIRD 2 what to announce: the include file controlplane/bgp.h
// renders, written atomically, and `configure` on BIRD's control socket.
//
// sluiced speaks the control socket's protocol itself (what birdc sends
// and reads: a greeting line, a command, reply lines "CODE-text" ending with
// "CODE text") rather than running birdc: no fork and exec from a threaded
// daemon every change, a deadline on every read, BIRD's own error line in
// `sluicectl node status`, and no birdc binary needed in sluiced's unit.
#pragma once

#include "address.h"
#include "config.h"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

// The last line of BIRD's reply: its 4-digit code (0xxx: done, 8xxx and
// 9xxx: errors) and text.
struct bird_reply {
	std::string code;
	std::string text;
	bool ok() const { return code.size() == 4 && code[0] == '0'; }
};

// Connects to BIRD's control socket, reads its greeting, sends `command`
// (none: only the greeting, to see BIRD answers) and reads the reply.
// Throws sluice::error (one line naming the socket) when BIRD cannot be
// reached or does not answer within `timeout`.
bird_reply bird_command(const std::string &socket, const std::string &command,
			std::chrono::milliseconds timeout);

// Writes `data` to `path` through PATH.tmp and rename (mode 0640), so BIRD
// reading it at any moment sees the old file or the new one, never half;
// creates the parent directory (0750) if missing.
void write_file_atomic(const std::string &path, const std::string &data);

// Keeps BIRD's view in step with sluiced's decision. Thread-safe; sync()
// calls are serialized, status() never waits for BIRD.
class bird_announcer {
public:
	struct status {
		bool enabled = false;   // node.bgp present and enabled
		bool reachable = false; // BIRD answered the last contact
		bool in_sync = false;   // BIRD accepted the file that holds `announced`
		std::string error;      // why not reachable or not in sync
		std::vector<ip_address> announced; // what BIRD last accepted from sluiced
		uint64_t reconfigures = 0; // `configure` accepted
		uint64_t failures = 0;     // writes or `configure`s that failed
		uint64_t last_change_ns = 0; // realtime of the last accepted configure
	};

	// Makes BIRD announce exactly `prefixes` under `cfg`: writes the
	// include file and has BIRD reconfigure when its text changed, the file
	// on disk differs (someone or a watchdog removed it), BIRD came back
	// after being unreachable, or `force`. After a failure it tries again at
	// most every second unless forced; otherwise it checks once a second
	// that BIRD answers. Without cfg, or with enabled: false, it leaves BIRD
	// alone. Never throws.
	void sync(const std::optional<bgp_config> &cfg, const std::vector<ip_address> &prefixes, bool force);
	status get() const;

private:
	std::mutex io_mu_; // one sync at a time
	mutable std::mutex st_mu_;
	status st_;
	// Under io_mu_:
	std::string written_path_;                // the file sluiced last wrote
	std::optional<std::string> accepted_text_; // what BIRD last accepted from it
	bool resync_ = false;                      // BIRD was unreachable: configure once it is back
	uint64_t next_try_ns_ = 0, next_probe_ns_ = 0;
};

} // namespace sluice
