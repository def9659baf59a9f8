// Command coredns is CoreDNS built with only the plugins the real node's cluster DNS needs:
// it answers the cluster domain from the API server (kubernetes) and refuses every other name
// (there is no forward plugin, so nothing is ever sent to an outside resolver).
//
// An external build: the upstream coremain and server type, with the plugin list and its order
// (dnsserver.Directives) set here instead of in a generated zdirectives.go.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives are the plugins in execution order, as in upstream's plugin.cfg.
var directives = []string{"bind", "ready", "health", "errors", "log", "kubernetes"}

func init() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		panic(err)
	}
}

func main() {
	coremain.Run()
}
