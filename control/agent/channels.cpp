#include "channels.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "evaluator.hpp"
#include "flow_json.hpp"
#include "log.hpp"
#include "plane.hpp"
#include "validate.hpp"

namespace lg::agent {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// A reply of a fast path: its counters name every rule of the live state
// (65,536 counters of names up to 161 bytes), over a client's 1 MiB.
constexpr size_t kMaxReply = size_t(32) << 20;

std::string dump(const json &j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// "" when `r` is a JSON-RPC 2.0 response to `id`, else what is wrong.
std::string bad_response(const json &r, uint64_t id)
{
	if (!r.is_object())
		return "not a JSON object";
	if (auto v = r.find("jsonrpc"); v == r.end() || *v != "2.0")
		return "jsonrpc is not \"2.0\"";
	auto i = r.find("id");
	if (i == r.end() || !i->is_number_integer() || i->get<int64_t>() < 0 || i->get<uint64_t>() != id)
		return "not the reply to request " + std::to_string(id);
	bool res = r.contains("result"), er = r.contains("error");
	if (res == er)
		return "a reply has exactly one of result and error";
	if (er) {
		const json &e = r["error"];
		if (!e.is_object() || !e.contains("code") || !e["code"].is_number_integer() || !e.contains("message") ||
		    !e["message"].is_string())
			return "error is not {code, message}";
	}
	return "";
}

std::string error_text(const json &r)
{
	const json &e = r["error"];
	return e["message"].get<std::string>() + " (" + std::to_string(e["code"].get<int64_t>()) + ")";
}

// An object of non-negative integer counters, or absent (empty).
bool counter_map(const json &res, const char *k)
{
	auto it = res.find(k);
	if (it == res.end())
		return true;
	return it->is_object() && std::all_of(it->begin(), it->end(), [](const json &v) { return v.is_number_unsigned(); });
}

} // namespace

DataplaneChannels::~DataplaneChannels()
{
	for (auto &c : ch_)
		close(c.fd);
}

Result<Registration> DataplaneChannels::check_register(const json &req, json &error_reply) const
{
	json id = req.contains("id") ? req["id"] : json(nullptr);
	auto fail = [&](int code, const std::string &msg, const json &data = nullptr) -> Result<Registration> {
		error_reply = error_response(rpc_id_echoable(id) ? id : json(nullptr), code, msg, data);
		return err(msg);
	};
	if (!rpc_id_echoable(id))
		return fail(kInvalidRequest,
			    "invalid request: dataplane.register needs an id (a string or a number within 64 bits)");
	if (auto v = req.find("jsonrpc"); v == req.end() || *v != "2.0")
		return fail(kInvalidRequest, "invalid request: jsonrpc must be \"2.0\"");
	for (const auto &[k, v] : req.items())
		if (k != "jsonrpc" && k != "id" && k != "method" && k != "params")
			return fail(kInvalidRequest, "invalid request: unknown member '" + k + "'");
	auto p = req.find("params");
	if (p == req.end() || !p->is_object())
		return fail(kInvalidParams, "invalid params: params must be an object", json{{"param", "params"}});
	for (const auto &[k, v] : p->items())
		if (k != "kind" && k != "name" && k != "pid" && k != "generation")
			return fail(kInvalidParams, "invalid params: unknown parameter '" + k + "'", json{{"param", k}});
	Registration r;
	auto kind = p->find("kind");
	if (kind == p->end() || *kind != "dpdk")
		return fail(kInvalidParams, "invalid params: kind: must be \"dpdk\"", json{{"param", "kind"}});
	r.kind = "dpdk";
	auto name = p->find("name");
	if (name == p->end() || !name->is_string() || !valid_dataplane_name(name->get<std::string>()))
		return fail(kInvalidParams, "invalid params: name: 1-64 characters of A-Z a-z 0-9 . _ -",
			    json{{"param", "name"}});
	r.name = name->get<std::string>();
	auto pid = p->find("pid");
	if (pid == p->end() || !pid->is_number_integer() || pid->get<int64_t>() <= 0)
		return fail(kInvalidParams, "invalid params: pid: must be a positive integer", json{{"param", "pid"}});
	r.pid = pid->get<int64_t>();
	if (auto g = p->find("generation"); g != p->end()) {
		if (!g->is_number_unsigned())
			return fail(kInvalidParams, "invalid params: generation: must be an integer >= 0",
				    json{{"param", "generation"}});
		r.generation = g->get<uint64_t>();
	}
	if (int(ch_.size()) >= o_.max_channels)
		return fail(kTooManyConnections,
			    "too many dataplanes: the limit is " + std::to_string(o_.max_channels));
	for (const auto &c : ch_)
		if (c.reg.name == r.name)
			return fail(kInvalidParams, "invalid params: name: a dataplane named '" + r.name + "' is registered",
				    json{{"param", "name"}});
	return r;
}

std::string DataplaneChannels::request(uint64_t id, const char *method, const json *params) const
{
	json req{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
	if (params)
		req["params"] = *params;
	return dump(req) + "\n";
}

void DataplaneChannels::drop(Channel &c, const std::string &why)
{
	if (c.dead)
		return;
	c.dead = true;
	c.waiting = false;
	c.why = why;
}

// Closes dropped channels (the fast path sees the end of stream and registers again).
void DataplaneChannels::reap()
{
	for (auto it = ch_.begin(); it != ch_.end();) {
		if (!it->dead) {
			++it;
			continue;
		}
		log("dataplane %s '%s' (pid %lld) dropped: %s", it->reg.kind.c_str(), it->reg.name.c_str(),
		    (long long)it->reg.pid, it->why.c_str());
		close(it->fd);
		it = ch_.erase(it);
	}
}

void DataplaneChannels::add(int fd, Registration r, std::string pending_in, std::string first_line,
			    uint64_t generation, const json &state)
{
	Channel &c = ch_.emplace_back();
	c.fd = fd;
	c.reg = std::move(r);
	c.in = std::move(pending_in);
	c.out = std::move(first_line);
	log("dataplane %s '%s' (pid %lld) registered", c.reg.kind.c_str(), c.reg.name.c_str(), (long long)c.reg.pid);
	publish_to({&c}, generation, state);
	reap();
}

void DataplaneChannels::publish(uint64_t generation, const json &state)
{
	std::vector<Channel *> all;
	for (auto &c : ch_)
		all.push_back(&c);
	if (all.empty())
		return;
	publish_to(all, generation, state);
	reap();
}

void DataplaneChannels::publish_to(std::vector<Channel *> targets, uint64_t generation, const json &state)
{
	uint64_t id = next_id_++;
	json params{{"generation", generation}, {"state", state}};
	std::string line = request(id, "dataplane.publish", &params);
	exchange(std::move(targets), line, id, [&](Channel &c, const json &r) -> std::optional<std::string> {
		if (r.contains("error"))
			return "refused generation " + std::to_string(generation) + ": " + error_text(r);
		const json &res = r["result"];
		if (!res.is_object() || !res.contains("generation") || !res["generation"].is_number_unsigned() ||
		    res["generation"].get<uint64_t>() != generation)
			return "malformed reply to dataplane.publish: result is not {\"generation\": " +
			       std::to_string(generation) + "}";
		c.generation = generation;
		return std::nullopt;
	});
}

std::vector<DataplaneChannels::Answer> DataplaneChannels::query(const char *method)
{
	std::vector<Answer> out;
	std::vector<Channel *> all;
	for (auto &c : ch_)
		all.push_back(&c);
	if (all.empty())
		return out;
	uint64_t id = next_id_++;
	bool counters = std::strcmp(method, "dataplane.counters") == 0;
	exchange(all, request(id, method, nullptr), id, [&](Channel &c, const json &r) -> std::optional<std::string> {
		if (r.contains("error")) {
			// The channel stays: a fast path may not offer every query.
			log("dataplane %s '%s': %s failed: %s", c.reg.kind.c_str(), c.reg.name.c_str(), method,
			    error_text(r).c_str());
			return std::nullopt;
		}
		const json &res = r["result"];
		if (!res.is_object())
			return std::string("malformed reply to ") + method + ": result is not an object";
		if (counters) {
			if (!res.contains("generation") || !res["generation"].is_number_unsigned())
				return "malformed reply to dataplane.counters: no generation";
			for (const char *k : {"reasons", "rules", "private_endpoints", "servers"})
				if (!counter_map(res, k))
					return std::string("malformed reply to dataplane.counters: ") + k +
					       " is not an object of counts";
			if (res.contains("flows") && !res["flows"].is_number_unsigned())
				return "malformed reply to dataplane.counters: flows is not a count";
		} else if (std::strcmp(method, "dataplane.flowLog") == 0) {
			// Every string is the hex of one ABI struct: checked whole here,
			// so that a bad one drops the channel before anything is used.
			auto hex_array = [&](const char *k, size_t n) {
				auto it = res.find(k);
				return it != res.end() && it->is_array() &&
				       std::all_of(it->begin(), it->end(), [n](const json &x) {
					       if (!x.is_string())
						       return false;
					       const std::string &h = x.get_ref<const std::string &>();
					       return h.size() == 2 * n && h.find_first_not_of("0123456789abcdefABCDEF") ==
										   std::string::npos;
				       });
			};
			if (!hex_array("events", sizeof(lg_flow_key) + sizeof(lg_flowlog_entry)) ||
			    !hex_array("flows", sizeof(lg_flow_sample)) || !res.contains("complete") ||
			    !res["complete"].is_boolean() || !res.contains("now") || !res["now"].is_number_unsigned() ||
			    !res.contains("lost") || !res["lost"].is_number_unsigned())
				return "malformed reply to dataplane.flowLog: events, flows, complete, now or lost";
		} else {
			if (!res.contains("flows") || !res["flows"].is_array() ||
			    !std::all_of(res["flows"].begin(), res["flows"].end(), [](const json &f) { return f.is_object(); }))
				return "malformed reply to dataplane.flows: flows is not an array of objects";
		}
		out.push_back(Answer{c.reg.name, res});
		return std::nullopt;
	});
	reap();
	return out;
}

void DataplaneChannels::exchange(std::vector<Channel *> targets, const std::string &line, uint64_t id,
				 const Check &check)
{
	for (Channel *c : targets) {
		c->out += line;
		c->waiting = true;
	}
	auto deadline = Clock::now() + std::chrono::milliseconds(o_.timeout_ms);
	for (;;) {
		std::vector<pollfd> fds;
		std::vector<Channel *> who;
		for (Channel *c : targets) {
			if (!c->waiting)
				continue;
			fds.push_back({c->fd, short(POLLIN | (c->out_off < c->out.size() ? POLLOUT : 0)), 0});
			who.push_back(c);
		}
		if (fds.empty())
			break;
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
		if (left <= 0) {
			for (Channel *c : who)
				drop(*c, "no answer within " + std::to_string(o_.timeout_ms) + " ms");
			break;
		}
		int n = poll(fds.data(), fds.size(), int(left) + 1);
		if (n < 0 && errno != EINTR) {
			for (Channel *c : who)
				drop(*c, std::string("poll: ") + std::strerror(errno));
			break;
		}
		for (size_t i = 0; n > 0 && i < fds.size(); i++) {
			Channel &c = *who[i];
			if ((fds[i].revents & POLLOUT) && c.out_off < c.out.size()) {
				ssize_t k = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
						 MSG_NOSIGNAL | MSG_DONTWAIT);
				if (k < 0 && errno != EAGAIN && errno != EINTR) {
					drop(c, std::string("send: ") + std::strerror(errno));
					continue;
				}
				if (k > 0)
					c.out_off += size_t(k);
				if (c.out_off == c.out.size()) {
					c.out.clear();
					c.out_off = 0;
				}
			}
			if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				char buf[65536];
				ssize_t k = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
				if (k == 0) {
					drop(c, "closed the connection");
					continue;
				}
				if (k < 0 && errno != EAGAIN && errno != EINTR) {
					drop(c, std::string("recv: ") + std::strerror(errno));
					continue;
				}
				if (k > 0)
					c.in.append(buf, size_t(k));
				take_replies(c, id, check);
			}
		}
	}
	// Input beyond the reply is not part of the protocol.
	for (Channel *c : targets)
		if (!c->dead && c->in.find_first_not_of(" \t\r\n") != std::string::npos)
			drop(*c, "sent a message that is not the reply to a request");
}

void DataplaneChannels::take_replies(Channel &c, uint64_t id, const Check &check)
{
	while (c.waiting) {
		// Whitespace before a reply (blank lines among it) goes in one
		// erase: one each would move the buffer once per line. A reply's
		// line is searched for its newline from where the last read ended
		// (a 12 MiB reply comes in hundreds of reads).
		size_t lead = c.in.find_first_not_of(" \t\r\n");
		if (lead == std::string::npos)
			lead = c.in.size();
		if (lead) {
			c.in.erase(0, lead);
			c.scanned = c.scanned > lead ? c.scanned - lead : 0;
		}
		size_t nl = c.in.find('\n', c.scanned);
		if (nl == std::string::npos) {
			c.scanned = c.in.size();
			if (c.in.size() > kMaxReply + (c.in.ends_with('\r') ? 1 : 0))
				drop(c, "reply over the 32 MiB cap");
			return;
		}
		c.scanned = 0;
		size_t len = nl > 0 && c.in[nl - 1] == '\r' ? nl - 1 : nl;
		if (len > kMaxReply) {
			drop(c, "reply over the 32 MiB cap");
			return;
		}
		std::string line = c.in.substr(0, len);
		c.in.erase(0, nl + 1);
		if (nesting_depth(line) > kMaxDepth) {
			drop(c, "malformed reply: nested deeper than " + std::to_string(kMaxDepth) + " levels");
			return;
		}
		json r = json::parse(line, nullptr, false);
		if (r.is_discarded()) {
			drop(c, "malformed reply: not JSON");
			return;
		}
		if (std::string bad = bad_response(r, id); !bad.empty()) {
			drop(c, "malformed reply: " + bad);
			return;
		}
		if (c.out_off < c.out.size() || !c.out.empty()) {
			drop(c, "answered before the request was sent whole");
			return;
		}
		c.waiting = false;
		if (auto why = check(c, r))
			drop(c, *why);
	}
}

std::vector<int> DataplaneChannels::fds() const
{
	std::vector<int> out;
	for (const auto &c : ch_)
		out.push_back(c.fd);
	return out;
}

void DataplaneChannels::readable(int fd)
{
	auto it = std::find_if(ch_.begin(), ch_.end(), [&](const Channel &c) { return c.fd == fd; });
	if (it == ch_.end())
		return;
	char buf[4096];
	ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (k == 0)
		drop(*it, "closed the connection");
	else if (k < 0 && errno != EAGAIN && errno != EINTR)
		drop(*it, std::string("recv: ") + std::strerror(errno));
	else if (k > 0) {
		it->in.append(buf, size_t(k));
		if (it->in.find_first_not_of(" \t\r\n") != std::string::npos)
			drop(*it, "sent a message that is not the reply to a request");
		else if (!it->waiting) {
			it->in.clear(); // whitespace between messages: nothing to keep
			it->scanned = 0;
		}
	}
	reap();
}

json DataplaneChannels::describe() const
{
	json out = json::array();
	for (const auto &c : ch_)
		out.push_back(json{{"kind", c.reg.kind}, {"name", c.reg.name}, {"pid", c.reg.pid}, {"generation", c.generation}});
	return out;
}

// ---- Dataplanes ----

const CompiledTables *Dataplanes::live_tables() const { return plane_.live_tables(); }
Dataplane::Route Dataplanes::route(const Addr &dst) const { return plane_.route(dst); }
bool Dataplanes::forwards(uint32_t vni, bool v6) const { return plane_.forwards(vni, v6); }

DataplaneCounters Dataplanes::counters()
{
	DataplaneCounters c = plane_.counters();
	json per = json::object();
	auto total_drops = [](const auto &reasons) {
		uint64_t n = 0;
		for (size_t i = 1; i < reasons.size(); i++)
			n += reasons[i];
		return n;
	};
	if (plane_.has_xdp())
		per["xdp"] = json{{"generation", plane_.generation()},
				  {"forwarded", c.reasons[LG_REASON_NONE]},
				  {"dropped", total_drops(c.reasons)},
				  {"flows", c.flows},
				  {"nextHops", plane_.next_hops()},
				  {"flowLog", plane_.flow_log_counts()}};
	for (const auto &a : ch_.query("dataplane.counters")) {
		std::array<uint64_t, LG_REASON__COUNT> mine{};
		if (auto it = a.result.find("reasons"); it != a.result.end())
			for (const auto &[k, v] : it->items())
				for (int i = 0; i < LG_REASON__COUNT; i++)
					if (k == reason_name(lg_reason(i)))
						mine[size_t(i)] += v.get<uint64_t>(); // unknown names: a newer fast path; ignored
		for (size_t i = 0; i < mine.size(); i++)
			c.reasons[i] += mine[i];
		auto add = [&](const char *k, std::map<std::string, uint64_t> &to) {
			if (auto it = a.result.find(k); it != a.result.end())
				for (const auto &[name, v] : it->items())
					to[name] += v.get<uint64_t>();
		};
		add("rules", c.rules);
		add("private_endpoints", c.private_endpoints);
		add("servers", c.servers);
		uint64_t flows = a.result.value("flows", uint64_t(0));
		c.flows += flows;
		json one{{"generation", a.result["generation"]},
			 {"forwarded", mine[LG_REASON_NONE]},
			 {"dropped", total_drops(mine)}};
		if (a.result.contains("flows"))
			one["flows"] = flows;
		// Forwarded is the policy's verdict; what a port then failed to
		// send (a full TX queue) is counted there, and shown beside it.
		if (auto p = a.result.find("ports"); p != a.result.end() && p->is_object())
			if (auto t = p->find("txFailed"); t != p->end() && t->is_number_unsigned())
				one["txFailed"] = *t;
		if (auto f = a.result.find("flowLog"); f != a.result.end() && f->is_object())
			one["flowLog"] = *f; // on, written, lost
		per["dpdk:" + a.name] = one;
	}
	c.dataplanes = per;
	return c;
}

json Dataplanes::flows(size_t limit)
{
	json out = json::array();
	for (json &f : plane_.flows(limit)) {
		f["dataplane"] = "xdp";
		out.push_back(std::move(f));
	}
	if (out.size() >= limit)
		return out;
	for (auto &a : ch_.query("dataplane.flows"))
		for (json &f : a.result["flows"]) {
			if (out.size() >= limit)
				return out;
			f["dataplane"] = "dpdk:" + a.name;
			out.push_back(std::move(f));
		}
	return out;
}

std::vector<FlowLogInput> Dataplanes::flow_log()
{
	std::vector<FlowLogInput> out;
	if (auto x = plane_.flow_log())
		out.push_back(std::move(*x));
	for (auto &a : ch_.query("dataplane.flowLog")) {
		// The hex was checked whole by query(): decoding cannot fail.
		FlowLogInput in;
		in.plane = "dpdk:" + a.name;
		in.flows_complete = a.result["complete"].get<bool>();
		in.listed_ns = a.result["now"].get<uint64_t>();
		in.lost = a.result["lost"].get<uint64_t>();
		for (const json &h : a.result["events"]) {
			uint8_t b[sizeof(lg_flow_key) + sizeof(lg_flowlog_entry)];
			FlowEvent ev;
			from_hex(h.get<std::string>(), b, sizeof b);
			std::memcpy(&ev.key, b, sizeof ev.key);
			std::memcpy(&ev.v, b + sizeof ev.key, sizeof ev.v);
			in.events.push_back(ev);
		}
		for (const json &h : a.result["flows"]) {
			lg_flow_sample f{};
			from_hex(h.get<std::string>(), &f, sizeof f);
			in.flows.push_back(flow_sample(f));
		}
		out.push_back(std::move(in));
	}
	return out;
}

json Dataplanes::describe()
{
	json out = json::array();
	if (plane_.has_xdp())
		out.push_back(json{{"kind", "xdp"}, {"generation", plane_.generation()}});
	for (auto &d : ch_.describe())
		out.push_back(d);
	return out;
}

} // namespace lg::agent
