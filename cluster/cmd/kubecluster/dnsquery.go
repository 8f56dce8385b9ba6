package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// runDNSQuery asks a DNS server for the A records of NAME, as a stub resolver
// configured by resolv.conf would: with --search and --ndots, a NAME with
// fewer dots than ndots is tried with each search domain first, then as it is
// (absolute names, ending in a dot, are asked as they are). It prints the
// name that answered and its addresses, and exits 1 when no name has an A
// record. --wait retries until an answer comes or the time is up (for
// scripts/cluster's readiness check).
func runDNSQuery(args []string) int {
	fs := flag.NewFlagSet("dnsquery", flag.ContinueOnError)
	server := fs.String("server", "10.96.0.10:53", "DNS server, HOST:PORT")
	search := fs.String("search", "", "search domains, separated by spaces or commas (resolv.conf's search)")
	ndots := fs.Int("ndots", 5, "resolv.conf's ndots")
	tcp := fs.Bool("tcp", false, "ask over TCP instead of UDP")
	wait := fs.Duration("wait", 0, "retry until an answer comes, for at most this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: kubecluster dnsquery [--server HOST:PORT] [--search 'D1 D2'] [--ndots N] [--tcp] [--wait D] NAME")
		return 2
	}
	name := fs.Arg(0)
	var domains []string
	for _, d := range strings.FieldsFunc(*search, func(r rune) bool { return r == ' ' || r == ',' }) {
		domains = append(domains, strings.TrimSuffix(d, "."))
	}
	client := &dns.Client{Timeout: 2 * time.Second}
	if *tcp {
		client.Net = "tcp"
	}
	deadline := time.Now().Add(*wait)
	for {
		fqdn, ips, last := resolveA(client, *server, name, domains, *ndots)
		if len(ips) > 0 {
			fmt.Printf("%s %s\n", fqdn, strings.Join(ips, " "))
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "dnsquery: no A record for %s from %s: %s\n", name, *server, last)
			return 1
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// resolveA tries the candidate names in resolv.conf order; it returns the
// first that has A records, or the last error or rcode seen.
func resolveA(client *dns.Client, server, name string, search []string, ndots int) (string, []string, string) {
	var candidates []string
	if strings.HasSuffix(name, ".") {
		candidates = []string{name}
	} else {
		withSearch := make([]string, 0, len(search))
		for _, d := range search {
			withSearch = append(withSearch, dns.Fqdn(name+"."+d))
		}
		if strings.Count(name, ".") >= ndots {
			candidates = append([]string{dns.Fqdn(name)}, withSearch...)
		} else {
			candidates = append(withSearch, dns.Fqdn(name))
		}
	}
	last := "no candidate name"
	for _, c := range candidates {
		m := new(dns.Msg)
		m.SetQuestion(c, dns.TypeA)
		m.RecursionDesired = true
		r, _, err := client.Exchange(m, server)
		if err != nil {
			last = err.Error()
			continue
		}
		var ips []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		if len(ips) > 0 {
			return c, ips, ""
		}
		last = fmt.Sprintf("%s: %s", c, dns.RcodeToString[r.Rcode])
	}
	return "", nil, last
}
