// A simulated vCenter for the vSphere tests: govmomi's simulator.VPX() model with -dc datacenters of
// -cluster clusters of -host hosts, -vm VMs per cluster and -ds datastores, on a free localhost port.
// Hosts differ as a real estate does (host i of a cluster takes entry i of -model and -nic, cyclically), and
// so do clusters (cluster j takes entry j of -ha: its admission control's host failures tolerated, 0 = HA off).
// -mixnic gives each host several drivers (NIC k of host i: entry i+k of -nic); -pg sets the port groups.
// It prints its URL on stdout and serves until stdin closes or it is killed (stdin's commands: see the end).
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

func main() {
	m := simulator.VPX()
	flag.IntVar(&m.Datacenter, "dc", 1, "datacenters")
	flag.IntVar(&m.Cluster, "cluster", 4, "clusters per datacenter")
	flag.IntVar(&m.ClusterHost, "host", 8, "hosts per cluster")
	flag.IntVar(&m.Machine, "vm", 4, "VMs per cluster")
	flag.IntVar(&m.Datastore, "ds", 2, "datastores, mounted on every host")
	ha := flag.String("ha", "1,2,1,0", "cluster j's HA failover level (host failures tolerated), cyclically; 0: HA off")
	models := flag.String("model", "Dell Inc./PowerEdge R740,HPE/ProLiant DL380 Gen10", "VENDOR/MODEL of host i, cyclically")
	drivers := flag.String("nic", "i40en,bnxtnet,qedentv", "NIC driver of host i, cyclically")
	mixed := flag.Bool("mixnic", false, "host i's NIC k takes driver i+k of -nic: hosts with several drivers")
	flag.IntVar(&m.Portgroup, "pg", 1, "distributed port groups per datacenter")
	user := flag.String("user", "ringfence", "the one account")
	password := flag.String("password", "vcsim-password", "its password")
	useTLS := flag.Bool("tls", false, "serve https with a self-signed certificate")
	flag.Parse()
	m.Host = 0 // no standalone hosts: every host is in a cluster
	if err := m.Create(); err != nil {
		panic(err)
	}
	levels, kinds, nics := strings.Split(*ha, ","), strings.Split(*models, ","), strings.Split(*drivers, ",")
	clusters := simulator.Map.All("ClusterComputeResource") // in no order: cluster j is the j-th by name
	sort.Slice(clusters, func(a, b int) bool { return clusters[a].Entity().Name < clusters[b].Entity().Name })
	for j, e := range clusters {
		c := e.(*simulator.ClusterComputeResource)
		var level int32
		fmt.Sscan(levels[j%len(levels)], &level)
		das := &c.ConfigurationEx.(*types.ClusterConfigInfoEx).DasConfig
		das.Enabled, das.AdmissionControlEnabled = types.NewBool(level > 0), types.NewBool(level > 0)
		das.AdmissionControlPolicy = &types.ClusterFailoverLevelAdmissionControlPolicy{FailoverLevel: level}
		for i, ref := range c.Host {
			h := simulator.Map.Get(ref).(*simulator.HostSystem)
			vendor, model := strings.Split(kinds[i%len(kinds)], "/")[0], strings.Split(kinds[i%len(kinds)], "/")[1]
			h.Hardware.SystemInfo.Vendor, h.Hardware.SystemInfo.Model = vendor, model
			for k := range h.Config.Network.Pnic {
				if *mixed {
					h.Config.Network.Pnic[k].Driver = nics[(i+k)%len(nics)]
				} else {
					h.Config.Network.Pnic[k].Driver = nics[i%len(nics)]
				}
			}
		}
	}
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*user, *password)}
	if *useTLS {
		m.Service.TLS = new(tls.Config)
	}
	s := m.Service.NewServer()
	fmt.Println(s.URL.Scheme + "://" + s.URL.Host + s.URL.Path)
	os.Stdout.Sync()
	// Until stdin closes, "disconnect NAME" / "connect NAME" sets a host's connection state (a host failing,
	// for the tests of what watches it), answering "ok" or "no such host" on stdout.
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		answer, f := "no such host", strings.Fields(lines.Text())
		if len(f) != 2 || (f[0] != "connect" && f[0] != "disconnect") {
			f, answer = []string{"", ""}, "unknown command"
		}
		for _, e := range simulator.Map.All("HostSystem") {
			if h := e.(*simulator.HostSystem); f[1] != "" && h.Name == f[1] {
				state := types.HostSystemConnectionState(f[0] + "ed")
				simulator.Map.WithLock(h, func() { h.Runtime.ConnectionState = state })
				answer = "ok"
			}
		}
		fmt.Println(answer)
	}
	s.Close()
	m.Remove() // the datastores' temporary directories
}
