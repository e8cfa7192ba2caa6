// The policy model: every object of SPEC §2 with its ARM field names. Fields
// hold what the operator wrote (strings for enums, prefixes and ports) so that
// validation can name exactly what is wrong and `show` prints it back as
// given; the compiler and the evaluator read a validated State only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lg {

struct SecurityRule {
	std::string name;
	int priority = 0;
	std::string direction = "Inbound"; // Inbound | Outbound
	std::string access = "Allow";      // Allow | Deny
	std::string protocol = "*";        // Tcp | Udp | Icmp | Esp | Ah | *
	// ARM has a singular and a plural form of each; one of the two is used.
	std::string sourceAddressPrefix;
	std::vector<std::string> sourceAddressPrefixes;
	std::string destinationAddressPrefix;
	std::vector<std::string> destinationAddressPrefixes;
	std::string sourcePortRange;
	std::vector<std::string> sourcePortRanges;
	std::string destinationPortRange;
	std::vector<std::string> destinationPortRanges;
	std::string description;

	// The effective lists, whichever form was used ("*" when neither).
	std::vector<std::string> sources() const;
	std::vector<std::string> destinations() const;
	std::vector<std::string> sourcePorts() const;
	std::vector<std::string> destinationPorts() const;
	bool operator==(const SecurityRule &) const = default;
};

struct NetworkSecurityGroup {
	std::string name;
	bool flushConnection = false;
	std::vector<SecurityRule> securityRules;
	// Always the six of SPEC §2; rebuilt on load, never taken from input.
	std::vector<SecurityRule> defaultSecurityRules;
	bool operator==(const NetworkSecurityGroup &) const = default;
};

// The six default rules of every NSG, in priority order per direction.
std::vector<SecurityRule> default_security_rules();

struct Subnet {
	std::string name;
	std::string addressPrefix;
	std::string networkSecurityGroup; // NSG name, "" for none
	std::vector<std::string> serviceEndpoints; // e.g. "Microsoft.Sql"
	std::string privateEndpointNetworkPolicies = "Disabled"; // Disabled | Enabled
	bool has_sql_endpoint() const;
	bool operator==(const Subnet &) const = default;
};

struct VirtualNetwork {
	std::string name;
	std::vector<std::string> addressPrefixes; // addressSpace.addressPrefixes
	std::optional<uint32_t> vni;              // assigned when absent
	std::vector<Subnet> subnets;
	std::vector<std::string> peerings; // names of peered VNets (virtualNetworkPeerings)
	const Subnet *subnet(const std::string &n) const;
	Subnet *subnet(const std::string &n);
	bool operator==(const VirtualNetwork &) const = default;
};

// On-premises ranges reached through a VNet's gateway: part of that VNet's
// (and its peers') VirtualNetwork service tag.
struct LocalNetworkGateway {
	std::string name;
	std::vector<std::string> addressPrefixes; // localNetworkAddressSpace.addressPrefixes
	std::vector<std::string> virtualNetworks; // VNets whose gateway connects it
	bool operator==(const LocalNetworkGateway &) const = default;
};

struct NetworkInterface {
	std::string name;
	std::string vnet;
	std::string subnet;
	std::string privateIPAddress;     // the primary ipConfiguration's
	std::string networkSecurityGroup; // "" for none
	// The other ipConfigurations' addresses, in the primary's subnet: the NIC's
	// NSG and its subnet's apply to each as to the primary.
	std::vector<std::string> secondaryIPAddresses = {};
	// Every address of the NIC, the primary's first.
	std::vector<const std::string *> addresses() const
	{
		std::vector<const std::string *> v{&privateIPAddress};
		for (const std::string &a : secondaryIPAddresses)
			v.push_back(&a);
		return v;
	}
	bool operator==(const NetworkInterface &) const = default;
};

struct ConnectionState {
	std::string status = "Approved"; // Pending | Approved | Rejected | Disconnected
	std::string description;
	std::string actionsRequired = "None";
	bool operator==(const ConnectionState &) const = default;
};

// A private endpoint and its connection. The connection (PEC) is the
// server's child in ARM; here it lives with its endpoint and the server's
// privateEndpointConnections[] is derived from it.
struct PrivateEndpoint {
	std::string name;
	std::string vnet;
	std::string subnet;
	std::string privateIPAddress;
	std::string server; // privateLinkServiceId's server name
	std::vector<std::string> groupIds{"mysqlServer"};
	bool manualRequest = false;
	std::string requestMessage;
	std::string connectionName;      // the PEC's name
	bool connectionPresent = true;   // false once the PEC was deleted
	ConnectionState connectionState; // Disconnected once the PEC was deleted
	bool operator==(const PrivateEndpoint &) const = default;
};

struct Backend {
	std::string address; // IP
	int port = 3306;
	int weight = 1; // 0 drains the backend
	bool operator==(const Backend &) const = default;
};

struct FirewallRule {
	std::string name;
	std::string startIpAddress;
	std::string endIpAddress;
	bool operator==(const FirewallRule &) const = default;
};

struct VirtualNetworkRule {
	std::string name;
	std::string vnet;   // from virtualNetworkSubnetId
	std::string subnet; // from virtualNetworkSubnetId
	bool operator==(const VirtualNetworkRule &) const = default;
};

struct MySqlServer {
	std::string name;
	std::string fullyQualifiedDomainName; // default <name>.mysql.database.azure.com
	std::string publicIp;
	std::vector<Backend> backends;
	std::string publicNetworkAccess = "Enabled"; // Enabled | Disabled
	std::vector<FirewallRule> firewallRules;
	std::vector<VirtualNetworkRule> virtualNetworkRules;
	bool operator==(const MySqlServer &) const = default;
};

struct ServiceTag {
	std::string name;     // e.g. Sql.WestUS
	std::string id;
	std::string region;
	std::string systemService;
	std::vector<std::string> addressPrefixes;
	bool operator==(const ServiceTag &) const = default;
};

struct ServiceTags {
	int64_t changeNumber = 0;
	std::string cloud = "Public";
	std::vector<ServiceTag> values;
	// Case-insensitive, as Azure treats tag names.
	const ServiceTag *find(const std::string &name) const;
	bool operator==(const ServiceTags &) const = default;
};

// The whole desired state. Collections keep insertion order (it is what
// `list` and `export` print).
struct State {
	std::vector<VirtualNetwork> virtualNetworks;
	std::vector<LocalNetworkGateway> localNetworkGateways;
	std::vector<NetworkSecurityGroup> networkSecurityGroups;
	std::vector<NetworkInterface> networkInterfaces;
	std::vector<PrivateEndpoint> privateEndpoints;
	std::vector<MySqlServer> servers;
	ServiceTags serviceTags;

	const VirtualNetwork *vnet(const std::string &n) const;
	VirtualNetwork *vnet(const std::string &n);
	const NetworkSecurityGroup *nsg(const std::string &n) const;
	NetworkSecurityGroup *nsg(const std::string &n);
	const NetworkInterface *nic(const std::string &n) const;
	const PrivateEndpoint *private_endpoint(const std::string &n) const;
	PrivateEndpoint *private_endpoint(const std::string &n);
	const MySqlServer *server(const std::string &n) const;
	MySqlServer *server(const std::string &n);
	bool operator==(const State &) const = default;
};

// Every reference (an NSG of a subnet or NIC, a VNet, subnet or server named
// by another object) spelled as the object it names: ARM names are
// case-insensitive, and the compiler and evaluator compare them exactly.
// References that name nothing are left for validation to report.
void canonical_references(State &s);
// Whether every reference already is (canonical_references would change nothing).
bool references_canonical(const State &s);

// Port fields of a validated rule ("*", "N", "N-M") as inclusive ranges.
std::vector<std::pair<uint16_t, uint16_t>> port_ranges(const std::vector<std::string> &specs);

// ASCII case-insensitive equality (Azure compares enum words and tag names so).
bool iequals(std::string_view a, std::string_view b);
// ASCII lower case: the key under which names compare as iequals does.
std::string lowercase(std::string v);

// Effective VNI of a VNet: the configured one, else one derived from its name
// (stable across hosts and restarts; collisions are a validation error).
uint32_t effective_vni(const VirtualNetwork &v);

// The VNets v is connected to by peering: those it lists that list it too.
// A peering one side lists is Azure's "Initiated": nothing flows over it yet,
// and the VirtualNetwork tag does not include the other side.
std::vector<std::string> connected_peers(const State &s, const VirtualNetwork &v);

// PEC name az-style: "<endpoint>.<uuid>", derived from the endpoint and server
// names so two hosts with the same state agree.
std::string default_connection_name(const std::string &endpoint, const std::string &server);

// A private endpoint at `ip` in vnet/subnet for `server`, its PEC named by
// default_connection_name, its connection state the default (Approved).
PrivateEndpoint make_private_endpoint(const std::string &name, const std::string &vnet, const std::string &subnet,
				      const std::string &ip, const std::string &server);

} // namespace lg
