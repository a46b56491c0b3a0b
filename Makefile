# porto: build, test and install.
#
#   make build         bin/portod, bin/portoctl, bin/porto-init, bin/porto-stage
#   make test          unit tests (no root, no bus): go test ./...
#   sudo make check    build + unit tests + root integration tier (PORTO_ROOT_TESTS=1)
#   sudo make bench    benchmarks side by side with their floors (docs/performance.md)
#   sudo make install  DESTDIR-aware install of binaries, config and system files
#   sudo make setup-demo  fresh machine: deps, build, install, bus, portod, first container
#   make fuzz          every fuzzer of every package for FUZZTIME (default 60s)

GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFLAGS   ?=
TESTFLAGS ?=
# The root tier: every package, one at a time (they share cgroups and buses).
ROOT_PKGS ?= ./...
ROOT_TESTFLAGS ?= -count=1 -p 1 -timeout 25m

PREFIX    ?= /usr
SBINDIR   ?= $(PREFIX)/sbin
BINDIR    ?= $(PREFIX)/bin
LIBDIR    ?= $(PREFIX)/lib/porto
DATADIR   ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
DBUSPOLICYDIR ?= $(DATADIR)/dbus-1/system.d
DBUSSERVICEDIR ?= $(DATADIR)/dbus-1/system-services
POLKITDIR ?= $(DATADIR)/polkit-1/actions
SYSTEMDUNITDIR ?= /lib/systemd/system
DOCDIR    ?= $(DATADIR)/doc/porto
DESTDIR   ?=

BIN := bin/portod bin/portoctl bin/porto-init bin/porto-stage

.PHONY: all build test check check-root install uninstall clean fmt vet setup-demo fuzz FORCE

all: build

build: $(BIN)

bin/portod: FORCE
	$(GO) build $(GOFLAGS) -o $@ ./cmd/portod

# portoctl is static: no dynamic loader at every invocation (about 1.5 ms).
bin/portoctl: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./cmd/portoctl

# porto-init is pid 1 of containers: static, no cgo.
bin/porto-init: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./cmd/porto-init

# porto-stage is the isolation stage every container start runs: static,
# no cgo, so it starts fast.
bin/porto-stage: FORCE
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -o $@ ./cmd/porto-stage

FORCE:

# Unit tier: no root, no bus. Root-only tests skip themselves.
test:
	env -u PORTO_ROOT_TESTS $(GO) test $(GOFLAGS) $(TESTFLAGS) ./...

# What CI and the README run, as root: build, unit tier, then the root
# integration tier (tests/ drives bin/portod and bin/portoctl on a private bus).
# Both tiers always run, so one failure does not hide the other's results.
check: build
	@rc=0; \
	$(MAKE) --no-print-directory test || rc=1; \
	$(MAKE) --no-print-directory check-root || rc=1; \
	if [ $$rc != 0 ]; then echo "make check: FAILED (see above)" >&2; else echo "make check: all passed"; fi; \
	exit $$rc

check-root:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make check: the integration tier needs root: run 'sudo make check'" >&2; exit 1; fi
	PORTO_ROOT_TESTS=1 PORTO_BIN=$(CURDIR)/bin $(GO) test $(GOFLAGS) $(ROOT_TESTFLAGS) $(TESTFLAGS) $(ROOT_PKGS)

# Fuzzing: each Fuzz* function of each package runs for FUZZTIME (go test
# -fuzz takes one target at a time). FUZZPAR lanes run side by side, each
# taking whole packages (balanced by fuzzer count); crashers are saved in
# <pkg>/testdata/fuzz/<FuzzName>/ next to the corpora. Minimizing a big new
# input may take most of a run: FUZZMINTIME bounds it. Go 1.26's fuzz
# coordinator can end a run with "context deadline exceeded" at the
# -fuzztime boundary without any failing input (golang/go#75804, fixed in
# Go 1.27): such a run is run once more, and is not a failure if it ends
# that way again; a failing input written always is.
FUZZTIME ?= 60s
FUZZPAR  ?= 1
FUZZMINTIME ?= 5s
fuzz:
	@plan=$$(grep -rc --include='*_test.go' '^func Fuzz' . | \
		awk -F: '$$2 > 0 && $$1 !~ /^\.\/tests\// { d = $$1; sub(/\/[^\/]*$$/, "", d); n[d] += $$2 } END { for (d in n) print n[d], d }' | \
		sort -k1,1rn -k2 | awk -v lanes=$(FUZZPAR) '{ b = 0; for (i = 1; i < lanes; i++) if (load[i] < load[b]) b = i; load[b] += $$1; print b, $$2 }'); \
	rc=0; pids=; \
	for lane in $$(seq 0 $$(($(FUZZPAR) - 1))); do \
		( lrc=0; \
		for pkg in $$(echo "$$plan" | awk -v l=$$lane '$$1 == l { print $$2 }'); do \
			for fz in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$pkg/*_test.go); do \
				echo "fuzz: $$pkg $$fz for $(FUZZTIME)"; \
				out=$$(mktemp); \
				$(GO) test $(GOFLAGS) -run='^$$' -fuzz="^$$fz$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINTIME) $$pkg >$$out 2>&1; st=$$?; cat $$out; \
				if [ $$st != 0 ] && ! grep -q 'Failing input written to' $$out && grep -q 'context deadline exceeded' $$out; then \
					echo "fuzz: $$pkg $$fz: go test -fuzz ended on its own deadline with no failing input (golang/go#75804, fixed in Go 1.27); running it once more"; \
					$(GO) test $(GOFLAGS) -run='^$$' -fuzz="^$$fz$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINTIME) $$pkg >$$out 2>&1; st=$$?; cat $$out; \
					if [ $$st != 0 ] && ! grep -q 'Failing input written to' $$out && grep -q 'context deadline exceeded' $$out; then \
						echo "fuzz: $$pkg $$fz: the same deadline race again, still no failing input: not a crash"; st=0; \
					fi; \
				fi; \
				rm -f $$out; \
				[ $$st = 0 ] || { echo "fuzz: $$pkg $$fz FAILED" >&2; lrc=1; }; \
			done; \
		done; exit $$lrc ) & pids="$$pids $$!"; \
	done; \
	for p in $$pids; do wait $$p || rc=1; done; \
	if [ $$rc != 0 ]; then echo "make fuzz: FAILED (see above; crashers are in <pkg>/testdata/fuzz)" >&2; else echo "make fuzz: no crash"; fi; \
	exit $$rc

fmt:
	gofmt -w $$(find . -name '*.go' -not -path './tests/.work/*')

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './tests/.work/*')); \
		if [ -n "$$out" ]; then echo "gofmt needed:" $$out >&2; exit 1; fi

# DESTDIR-aware. /etc/porto.conf is never overwritten on a live system
# (DESTDIR empty); a staged install (DESTDIR set) always gets the example.
install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)
	install -m 0755 bin/portod $(DESTDIR)$(SBINDIR)/portod
	install -m 0755 bin/portoctl $(DESTDIR)$(BINDIR)/portoctl
	install -m 0755 bin/porto-init $(DESTDIR)$(LIBDIR)/porto-init
	install -m 0755 bin/porto-stage $(DESTDIR)$(LIBDIR)/porto-stage
	install -d $(DESTDIR)$(SYSCONFDIR)
	@if [ -n "$(DESTDIR)" ] || [ ! -e $(SYSCONFDIR)/porto.conf ]; then \
		echo install -m 0644 porto.conf $(DESTDIR)$(SYSCONFDIR)/porto.conf; \
		install -m 0644 porto.conf $(DESTDIR)$(SYSCONFDIR)/porto.conf; \
	else echo "keeping existing $(SYSCONFDIR)/porto.conf (the example is in $(DOCDIR))"; fi
	install -d $(DESTDIR)$(DBUSPOLICYDIR) $(DESTDIR)$(DBUSSERVICEDIR) $(DESTDIR)$(POLKITDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0644 packaging/org.porto.Manager.conf $(DESTDIR)$(DBUSPOLICYDIR)/org.porto.Manager.conf
	install -m 0644 packaging/org.porto.Manager.service $(DESTDIR)$(DBUSSERVICEDIR)/org.porto.Manager.service
	install -m 0644 packaging/org.porto.policy $(DESTDIR)$(POLKITDIR)/org.porto.policy
	install -m 0644 packaging/porto.service $(DESTDIR)$(SYSTEMDUNITDIR)/porto.service
	@if [ -e packaging/porto.socket ]; then \
		echo install -m 0644 packaging/porto.socket $(DESTDIR)$(SYSTEMDUNITDIR)/porto.socket; \
		install -m 0644 packaging/porto.socket $(DESTDIR)$(SYSTEMDUNITDIR)/porto.socket; fi
	install -m 0644 porto.conf README.md $(DESTDIR)$(DOCDIR)/
	@if [ -d docs ]; then install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/; fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/portod $(DESTDIR)$(BINDIR)/portoctl $(DESTDIR)$(LIBDIR)/porto-init $(DESTDIR)$(LIBDIR)/porto-stage
	rm -f $(DESTDIR)$(DBUSPOLICYDIR)/org.porto.Manager.conf $(DESTDIR)$(DBUSSERVICEDIR)/org.porto.Manager.service
	rm -f $(DESTDIR)$(POLKITDIR)/org.porto.policy $(DESTDIR)$(SYSTEMDUNITDIR)/porto.service $(DESTDIR)$(SYSTEMDUNITDIR)/porto.socket
	rm -rf $(DESTDIR)$(DOCDIR)
	-rmdir $(DESTDIR)$(LIBDIR) 2>/dev/null
	@echo "left $(SYSCONFDIR)/porto.conf in place"

# One command on a fresh machine: packages, build, install, a system bus if
# there is none, portod, and a first container.
setup-demo:
	@if [ "$$(id -u)" != 0 ]; then echo "make setup-demo needs root: run 'sudo make setup-demo'" >&2; exit 1; fi
	GO=$(GO) packaging/setup-demo

clean:
	rm -rf bin tests/.work
	-$(GO) clean -testcache

# Benchmarks, as root (about 5-10 minutes): porto side by side with its
# floors in one run; the report goes to stdout and bin/bench-results.md.
# BENCHFLAGS passes portobench flags (e.g. -suites lifecycle -n 50).
.PHONY: bench
BENCHFLAGS ?=
bench: build
	@if [ "$$(id -u)" != 0 ]; then echo "make bench needs root: run 'sudo make bench'" >&2; exit 1; fi
	$(GO) build $(GOFLAGS) -o bin/portobench ./bench/cmd/portobench
	bin/portobench -v -bin $(CURDIR)/bin -out bin/bench-results.md $(BENCHFLAGS)
