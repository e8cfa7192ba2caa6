// NSG flow log v2 records from flow listings and lg_flowlog events. What a
// tick does, per plane:
//   - a BEGIN event for a flow not tracked: B tuples at the event's time (a
//     flow gone before the listing still gets its B, then its E);
//   - a listed flow not tracked: B tuples now. Its counts so far go into its
//     next tuple: a flow learned this tick gets no C in the same tick;
//   - a tracked flow whose counts grew: C tuples with the growth;
//   - a listed flow in LG_CT_CLOSED: E tuples with the growth, once;
//   - a tracked flow not listed (complete listings only): E tuples, unless it
//     already ended, with the counts its last listing had and no tuple told;
//     then it is forgotten;
//   - counts that went backwards, an ended flow listed open again, or a BEGIN
//     later than the flow was known to exist: a new flow on the same key (E
//     for the old one, B for the new);
//   - a DENY event: one D tuple (state B, no counts) in the NSG that denied.
// Which NSGs log a flow: every NSG level te_decide runs for it on the live
// tables when the logger learns of it, each with its own rule, direction and
// decision, kept for the flow's later tuples.
#include "flow_log.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>

#include "arm_json.hpp"
#include "net.hpp"
#include "table_eval.hpp"

extern "C" {
#include "lg_reasons.h"
}

namespace lg {

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17;
constexpr uint64_t kNs = 1000000000ull;
constexpr uint64_t kUnlistedTicks = 10; // a cut listing's flows are forgotten after this many
const char *const kNoMac = "000000000000";

bool loggable(uint8_t proto) { return proto == kTcp || proto == kUdp; }

// Flow log direction of an NSG stage; 0 for any other stage.
char direction(uint8_t stage)
{
	switch (stage) {
	case LG_STAGE_NIC_OUTBOUND:
	case LG_STAGE_SUBNET_OUTBOUND: return 'O';
	case LG_STAGE_PE_SUBNET_INBOUND:
	case LG_STAGE_SUBNET_INBOUND:
	case LG_STAGE_NIC_INBOUND: return 'I';
	default: return 0;
	}
}

TePacket packet_of(const lg_flow_key &k, uint32_t egress_ifindex)
{
	TePacket p;
	std::memset(&p, 0, sizeof p);
	p.vni = k.vni;
	std::memcpy(p.src, k.src, 16);
	std::memcpy(p.dst, k.dst, 16);
	p.proto = k.proto;
	p.has_ports = 1;
	p.sport = ntohs(k.sport);
	p.dport = ntohs(k.dport);
	p.egress_ifindex = egress_ifindex;
	return p;
}

// "nsg/rule" split at the first '/' (neither name may hold one).
std::pair<std::string, std::string> split_rule(const std::string &name)
{
	size_t slash = name.find('/');
	if (slash == std::string::npos)
		return {name, ""};
	return {name.substr(0, slash), name.substr(slash + 1)};
}

std::string upper(std::string s)
{
	std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::toupper(c)); });
	return s;
}

// The tuple's part that names the flow: "src,dst,sport,dport,proto".
std::string flow_text(const lg_flow_key &k)
{
	Addr s, d;
	std::memcpy(s.b.data(), k.src, 16);
	std::memcpy(d.b.data(), k.dst, 16);
	return s.str() + "," + d.str() + "," + std::to_string(ntohs(k.sport)) + "," + std::to_string(ntohs(k.dport)) +
	       "," + (k.proto == kTcp ? "T" : "U");
}

// The counts part after the state letter: empty for B.
std::string counts_text(const uint64_t *delta)
{
	if (!delta)
		return ",,,,";
	return "," + std::to_string(delta[0]) + "," + std::to_string(delta[1]) + "," + std::to_string(delta[2]) + "," +
	       std::to_string(delta[3]);
}

// An event's monotonic time on the wall clock; now for times from the future.
uint64_t event_unix_s(uint64_t at_ns, uint64_t unix_ns, uint64_t mono_ns)
{
	uint64_t ago = at_ns <= mono_ns ? mono_ns - at_ns : 0;
	return (ago <= unix_ns ? unix_ns - ago : 0) / kNs;
}

} // namespace

std::string iso_time(uint64_t unix_ns)
{
	std::time_t t = std::time_t(unix_ns / kNs);
	std::tm tm{};
	gmtime_r(&t, &tm);
	char buf[48];
	size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	std::snprintf(buf + n, sizeof buf - n, ".%03uZ", unsigned(unix_ns % kNs / 1000000));
	return buf;
}

// This tick's tuples: by NSG (lower case: NSG names are case-insensitive),
// rule label, then MAC, each sorted, so the output is deterministic.
struct FlowLogger::Out {
	using Macs = std::map<std::string, std::vector<std::string>>;
	std::map<std::string, std::pair<std::string, std::map<std::string, Macs>>> nsgs; // -> (name, rules)

	void add(const std::string &rule_name, bool is_default, char dir, char decision, char state,
		 const std::string &mac, uint64_t unix_s, const std::string &flow, const uint64_t *delta)
	{
		auto [nsg, rule] = split_rule(rule_name);
		auto &n = nsgs[lowercase(nsg)];
		if (n.first.empty())
			n.first = nsg;
		std::string label = (is_default ? "DefaultRule_" : "UserRule_") + rule;
		n.second[label][mac].push_back(std::to_string(unix_s) + "," + flow + "," + dir + "," + decision + "," +
					       state + counts_text(delta));
	}
};

uint32_t FlowLogger::intern(const std::string &rule_name)
{
	auto [it, fresh] = name_ids_.emplace(rule_name, uint32_t(names_.size()));
	if (fresh)
		names_.push_back(rule_name);
	return it->second;
}

// Drops the names no tracked flow refers to any more.
void FlowLogger::compact()
{
	std::vector<uint32_t> remap(names_.size(), UINT32_MAX);
	std::vector<std::string> names;
	for (auto &[plane, flows] : planes_)
		for (auto &[k, f] : flows)
			for (uint8_t i = 0; i < f.nlevels; i++) {
				uint32_t &to = remap[f.levels[i].name];
				if (to == UINT32_MAX) {
					to = uint32_t(names.size());
					names.push_back(names_[f.levels[i].name]);
				}
				f.levels[i].name = to;
			}
	names_ = std::move(names);
	name_ids_.clear();
	for (uint32_t i = 0; i < names_.size(); i++)
		name_ids_.emplace(names_[i], i);
	compact_at_ = std::max<size_t>(2 * names_.size(), kCompactMin);
}

FlowLogger::Flow FlowLogger::learn(const lg_flow_key &k, uint32_t in_ifindex, uint32_t egress_ifindex,
				   const CompiledTables &live)
{
	Flow f;
	f.learned = serial_;
	TePacket p = packet_of(k, egress_ifindex);
	TeResult r = te_decide(live, &p);
	for (uint8_t i = 0; i < r.nlevels && i < kTeMaxLevels; i++) {
		const TeLevel &l = r.levels[i];
		char dir = direction(l.stage);
		if (!dir || l.counter >= live.rule_names.size())
			continue;
		Level &o = f.levels[f.nlevels++];
		o.name = intern(live.rule_names[l.counter]);
		// The NSG's side of the host: the source's interface for outbound
		// rules, the destination's for inbound ones.
		o.ifindex = dir == 'O' ? in_ifindex : egress_ifindex;
		o.dir = dir;
		o.decision = l.allow ? 'A' : 'D';
		o.is_default = l.is_default;
	}
	return f;
}

std::string FlowLogger::mac_text(uint32_t ifindex, const MacOf &mac)
{
	std::string m = ifindex && mac ? mac(ifindex) : std::string();
	return m.empty() ? kNoMac : m;
}

void FlowLogger::emit(Out &out, const Key &k, const Flow &f, uint64_t unix_s, char state, const uint64_t *delta,
		      const MacOf &mac) const
{
	if (!f.nlevels)
		return;
	lg_flow_key key;
	std::memcpy(&key, k.data(), sizeof key);
	std::string flow = flow_text(key);
	for (uint8_t i = 0; i < f.nlevels; i++) {
		const Level &l = f.levels[i];
		out.add(names_[l.name], l.is_default, l.dir, l.decision, state, mac_text(l.ifindex, mac), unix_s, flow,
			delta);
	}
}

// The direction of rule "nsg/rule" as the state has it; 0 when it has no such rule.
static char rule_direction(const State &state, const std::string &rule_name, bool is_default)
{
	auto [nsg, rule] = split_rule(rule_name);
	const NetworkSecurityGroup *n = state.nsg(nsg);
	if (!n)
		return 0;
	for (const SecurityRule &r : is_default ? n->defaultSecurityRules : n->securityRules)
		if (r.name == rule)
			return r.direction == "Outbound" ? 'O' : 'I';
	return 0;
}

// The NSG that denied: the event's rule when the live generation decided it,
// else what the live tables decide now (the rule's counter may have moved).
// The event names no stage: the live tables' decision gives the direction.
void FlowLogger::deny(Out &out, const FlowEvent &ev, const State &state, const CompiledTables &live,
		      uint64_t unix_ns, uint64_t mono_ns, const MacOf &mac)
{
	TePacket p = packet_of(ev.key, ev.v.egress_ifindex);
	TeResult r = te_decide(live, &p);
	// te_decide stops at the level that denies: its last.
	const TeLevel *l = !r.allowed && r.nlevels && !r.levels[r.nlevels - 1].allow ? &r.levels[r.nlevels - 1] : nullptr;
	uint32_t counter;
	bool is_default;
	char dir = 0;
	if (ev.v.generation == live.generation) {
		counter = ev.v.counter;
		is_default = ev.v.reason == LG_REASON_NSG_DEFAULT_DENY;
		if (counter < live.rule_names.size())
			dir = l && l->counter == counter ? direction(l->stage)
							 : rule_direction(state, live.rule_names[counter], is_default);
	} else if (l) {
		counter = l->counter;
		is_default = l->is_default;
		dir = direction(l->stage);
	} else {
		stale_++;
		return;
	}
	if (!dir) {
		stale_++;
		return;
	}
	uint32_t ifindex = dir == 'O' ? ev.v.ifindex : ev.v.egress_ifindex;
	out.add(live.rule_names[counter], is_default, dir, 'D', 'B', mac_text(ifindex, mac),
		event_unix_s(ev.v.at_ns, unix_ns, mono_ns), flow_text(ev.key), nullptr);
}

std::vector<nlohmann::json> FlowLogger::tick(const FlowLogInput &in, const State &state, const CompiledTables &live,
					     uint64_t unix_ns, uint64_t mono_ns, const MacOf &mac)
{
	serial_++;
	Out out;
	Plane &plane = planes_[in.plane];
	const uint64_t now_s = unix_ns / kNs;
	auto key_of = [](const lg_flow_key &k) {
		lg_flow_key c = k;
		c.pad0 = 0; // the one byte of the key no packet sets
		Key out;
		std::memcpy(out.data(), &c, sizeof c);
		return out;
	};
	auto ended = [&](const Key &k, Flow &f) {
		uint64_t d[4];
		for (int i = 0; i < 4; i++)
			d[i] = f.seen[i] - f.base[i];
		emit(out, k, f, now_s, 'E', d, mac);
		f.ended = true;
	};

	for (const FlowEvent &ev : in.events) {
		if (!loggable(ev.key.proto))
			continue;
		if (ev.v.kind == LG_FLOWLOG_DENY) {
			deny(out, ev, state, live, unix_ns, mono_ns, mac);
			continue;
		}
		if (ev.v.kind != LG_FLOWLOG_BEGIN)
			continue;
		Key k = key_of(ev.key);
		auto it = plane.find(k);
		if (it != plane.end()) {
			// Known since before the event: the same flow. Made after: a
			// new flow on the key (the dataplane writes BEGIN only then).
			if (it->second.learned == serial_ || ev.v.at_ns <= it->second.since_mono)
				continue;
			if (!it->second.ended)
				ended(k, it->second);
		}
		Flow f = learn(ev.key, ev.v.ifindex, ev.v.egress_ifindex, live);
		f.since_mono = ev.v.at_ns;
		emit(out, k, f, event_unix_s(ev.v.at_ns, unix_ns, mono_ns), 'B', nullptr, mac);
		plane[k] = f;
	}

	for (const FlowSample &s : in.flows) {
		// Only the original copy of a made flow (a claim's BEGIN follows).
		if (!lg_flow_listed(&s.e) || !loggable(s.e.orig.proto))
			continue;
		Key k = key_of(s.e.orig);
		uint64_t now[4] = {s.packets[0], s.bytes[0], s.packets[1], s.bytes[1]};
		bool closed = s.e.state == LG_CT_CLOSED;
		auto it = plane.find(k);
		if (!s.reply_found) { // the reply copy was not read: its counts stand
			now[2] = it != plane.end() ? it->second.seen[2] : 0;
			now[3] = it != plane.end() ? it->second.seen[3] : 0;
		}
		if (it != plane.end()) {
			Flow &f = it->second;
			bool back = false;
			for (int i = 0; i < 4; i++)
				back = back || now[i] < f.seen[i];
			if (back || (f.ended && !closed)) {
				if (!f.ended)
					ended(k, f);
				plane.erase(it);
				it = plane.end();
			}
		}
		if (it == plane.end()) {
			Flow f = learn(s.e.orig, s.e.nh[0].in_ifindex, s.e.egress_ifindex, live);
			emit(out, k, f, now_s, 'B', nullptr, mac);
			it = plane.emplace(k, f).first;
		}
		Flow &f = it->second;
		std::copy(now, now + 4, f.seen);
		f.since_mono = in.listed_ns ? in.listed_ns : mono_ns;
		f.listed = serial_;
		if (f.ended)
			continue;
		uint64_t d[4];
		bool grew = false;
		for (int i = 0; i < 4; i++) {
			d[i] = now[i] - f.base[i];
			grew = grew || d[i];
		}
		if (closed) {
			emit(out, k, f, now_s, 'E', d, mac);
			f.ended = true;
		} else if (grew && f.learned != serial_) {
			emit(out, k, f, now_s, 'C', d, mac);
		} else {
			continue;
		}
		std::copy(now, now + 4, f.base);
	}

	if (in.flows_complete) {
		for (auto it = plane.begin(); it != plane.end();) {
			if (it->second.listed == serial_) {
				++it;
				continue;
			}
			if (!it->second.ended)
				ended(it->first, it->second);
			it = plane.erase(it);
		}
	} else {
		// A cut listing tells nothing of the flows it left out: one not
		// listed for kUnlistedTicks is forgotten without an E (else a
		// table past the cut would be tracked for ever).
		for (auto it = plane.begin(); it != plane.end();) {
			uint64_t last = std::max(it->second.listed, it->second.learned);
			if (serial_ - last > kUnlistedTicks)
				it = plane.erase(it);
			else
				++it;
		}
	}
	if (plane.empty())
		planes_.erase(in.plane);
	if (names_.size() >= compact_at_)
		compact();

	std::vector<nlohmann::json> records;
	for (auto &[lower, nsg] : out.nsgs) {
		const NetworkSecurityGroup *n = state.nsg(nsg.first);
		const std::string &name = n ? n->name : nsg.first;
		nlohmann::json rules = nlohmann::json::array();
		std::string first_mac;
		for (auto &[label, macs] : nsg.second) {
			nlohmann::json groups = nlohmann::json::array();
			for (auto &[m, tuples] : macs) {
				if (first_mac.empty())
					first_mac = m;
				groups.push_back({{"mac", m}, {"flowTuples", tuples}});
			}
			rules.push_back({{"rule", label}, {"flows", std::move(groups)}});
		}
		records.push_back({{"time", iso_time(unix_ns)},
				   {"systemId", "linkgate"},
				   {"macAddress", first_mac},
				   {"category", "NetworkSecurityGroupFlowEvent"},
				   {"resourceId", upper(nsg_id(name))},
				   {"operationName", "NetworkSecurityGroupFlowEvents"},
				   {"properties", {{"Version", 2}, {"flows", std::move(rules)}}}});
	}
	return records;
}

size_t FlowLogger::tracked() const
{
	size_t n = 0;
	for (auto &[plane, flows] : planes_)
		n += flows.size();
	return n;
}

uint64_t FlowLogger::stale() const { return stale_; }

void FlowLogger::keep_planes(const std::vector<std::string> &planes)
{
	for (auto it = planes_.begin(); it != planes_.end();)
		if (std::find(planes.begin(), planes.end(), it->first) == planes.end())
			it = planes_.erase(it);
		else
			++it;
}

} // namespace lg
