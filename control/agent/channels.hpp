// The agent's side of the DPDK channel: connections of linkgate-dpdk
// processes that registered with `dataplane.register` on the control socket.
// On such a connection the roles are reversed: the agent sends requests
// (dataplane.publish, dataplane.counters, dataplane.flows) and the fast path
// answers. One request is in flight per channel; a channel that answers with
// an error to a publish, does not answer within the timeout, or sends
// anything that is not the awaited reply is closed and unregistered (the
// fast path reconnects and registers again). See docs/agent.md, "The DPDK
// channel".
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "flow_log.hpp"
#include "result.hpp"
#include "service.hpp"

namespace lg::agent {

class Plane;

struct ChannelOptions {
	int timeout_ms = 5000; // --dataplane-timeout: for each request to a channel
	int max_channels = 16; // --max-dataplanes
};

// The params of dataplane.register.
struct Registration {
	std::string kind; // "dpdk"
	std::string name;
	int64_t pid = 0;
	uint64_t generation = 0; // what it enforces now; 0: nothing yet (or not said)
};

class DataplaneChannels {
public:
	explicit DataplaneChannels(ChannelOptions o) : o_(o) {}
	~DataplaneChannels();
	DataplaneChannels(const DataplaneChannels &) = delete;
	DataplaneChannels &operator=(const DataplaneChannels &) = delete;

	// Checks a dataplane.register request: an error reply (as sent to a
	// client), or the registration. `full`/name clashes are checked here too.
	Result<Registration> check_register(const nlohmann::json &request, nlohmann::json &error_reply) const;

	// Takes `fd` (non-blocking) as a channel: sends `first_line` (the
	// register reply), then publishes the current generation and waits for
	// its ack; `pending_in` are bytes the client sent after its register.
	void add(int fd, Registration r, std::string pending_in, std::string first_line, uint64_t generation,
		 const nlohmann::json &state);

	// On every commit: dataplane.publish of (generation, state) to every
	// channel; returns once all have acknowledged or been dropped.
	void publish(uint64_t generation, const nlohmann::json &state);

	// dataplane.counters / dataplane.flows on every channel: the valid
	// results, by channel. A channel that does not answer in time or answers
	// malformed is dropped; one that answers with an error is skipped.
	struct Answer {
		std::string name;
		nlohmann::json result;
	};
	std::vector<Answer> query(const char *method);

	// The poll loop: channel fds to watch for input (POLLIN), and what to do
	// when one is readable outside a request (end of stream, or an
	// unsolicited message: the channel is dropped).
	std::vector<int> fds() const;
	void readable(int fd);

	size_t size() const { return ch_.size(); }
	nlohmann::json describe() const; // for `status`

private:
	struct Channel {
		int fd = -1;
		Registration reg;
		uint64_t generation = 0; // acknowledged
		std::string in, out;
		size_t scanned = 0; // bytes at the front of `in` known to hold no newline
		size_t out_off = 0;
		bool waiting = false;
		bool dead = false;
		std::string why; // why it is dropped
	};
	// What a reply means: nullopt keeps the channel, a string drops it.
	using Check = std::function<std::optional<std::string>(Channel &, const nlohmann::json &reply)>;
	void exchange(std::vector<Channel *> targets, const std::string &line, uint64_t id, const Check &check);
	void take_replies(Channel &c, uint64_t id, const Check &check);
	void drop(Channel &c, const std::string &why);
	void reap();
	std::string request(uint64_t id, const char *method, const nlohmann::json *params) const;
	void publish_to(std::vector<Channel *> targets, uint64_t generation, const nlohmann::json &state);

	ChannelOptions o_;
	std::list<Channel> ch_;
	uint64_t next_id_ = 1;
};

// What the service sees: the XDP plane and every DPDK channel together.
// explain uses the XDP plane's compiled tables (the same compile output the
// fast paths get as a state); stats add the channels' counters by name;
// flows list every dataplane's flows, each tagged with its dataplane.
class Dataplanes final : public Dataplane {
public:
	Dataplanes(Plane &plane, DataplaneChannels &channels) : plane_(plane), ch_(channels) {}
	const CompiledTables *live_tables() const override;
	Route route(const Addr &dst) const override;
	bool forwards(uint32_t vni, bool v6) const override;
	DataplaneCounters counters() override;
	nlohmann::json flows(size_t limit) override;
	nlohmann::json describe() override;
	// Every plane's flow-log input (XDP's, then each channel's).
	std::vector<FlowLogInput> flow_log();

private:
	Plane &plane_;
	DataplaneChannels &ch_;
};

} // namespace lg::agent
