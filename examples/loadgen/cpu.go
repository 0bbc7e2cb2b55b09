package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc: USER_HZ, 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuSample is a reading of the CPU time used so far, from /proc (Linux).
type cpuSample struct {
	at      time.Time
	servers time.Duration // the processes of the target under load
	front   time.Duration // nginx, when it is the front (wrk is added from its exit status)
	self    time.Duration // this process: the load generator and the proxy
	machine time.Duration // busy time of every CPU of the machine
	ok      bool          // false where /proc cannot be read
}

// takeCPU reads the CPU time of the processes pids, of the front's
// processes, of this process and of the whole machine.
func takeCPU(pids, front []int) cpuSample {
	s := cpuSample{at: time.Now(), ok: true}
	for _, pid := range front {
		if d, err := procCPU(pid); err == nil {
			s.front += d
		}
	}
	for _, pid := range pids {
		d, err := procCPU(pid)
		if err != nil {
			s.ok = false
			continue
		}
		s.servers += d
	}
	self, ok := selfCPU()
	s.self, s.ok = self, s.ok && ok
	m, err := machineBusy()
	if err != nil {
		s.ok = false
	}
	s.machine = m
	return s
}

// procCPU returns the user plus system time of process pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so the fields are
// counted from its closing parenthesis: the state is field 3, utime 14 and
// stime 15.
func parseProcStat(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, strconv.ErrSyntax
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, strconv.ErrSyntax
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, strconv.ErrSyntax
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// machineBusy returns the busy time of all CPUs from /proc/stat.
func machineBusy() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "cpu ") {
			return parseCPULine(sc.Text())
		}
	}
	return 0, strconv.ErrSyntax
}

// parseCPULine returns the busy time of the "cpu" line of /proc/stat:
// user, nice, system, irq, softirq and steal (guest time is part of user;
// idle and iowait are not busy).
func parseCPULine(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, strconv.ErrSyntax
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		busy += v
	}
	return time.Duration(busy) * clockTick, nil
}

// cpuUsage is the CPU used during one or more measured windows.
type cpuUsage struct {
	wall    time.Duration // length of the windows
	servers time.Duration // by the target's processes
	client  time.Duration // by the load generator and the proxy (nginx and wrk with -front nginx)
	other   time.Duration // by everything else on the machine
	ok      bool
}

// since returns the usage between an earlier sample a and s.
func (s cpuSample) since(a cpuSample) cpuUsage {
	u := cpuUsage{
		wall:    s.at.Sub(a.at),
		servers: s.servers - a.servers,
		client:  s.self - a.self + s.front - a.front,
		ok:      a.ok && s.ok,
	}
	u.other = max(0, s.machine-a.machine-u.servers-u.client)
	return u
}

// add accumulates o into u.
func (u *cpuUsage) add(o cpuUsage) {
	if u.wall == 0 {
		u.ok = o.ok
	} else {
		u.ok = u.ok && o.ok
	}
	u.wall += o.wall
	u.servers += o.servers
	u.client += o.client
	u.other += o.other
}

// cores returns d as a number of busy cores over the windows.
func (u cpuUsage) cores(d time.Duration) float64 {
	if u.wall <= 0 {
		return 0
	}
	return d.Seconds() / u.wall.Seconds()
}
