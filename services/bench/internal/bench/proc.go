package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// ProcSample is what /proc says of a process at one moment.
type ProcSample struct {
	CPUSeconds float64 // user + system since the process started
	PeakRSS    int64   // VmHWM, bytes
	RSS        int64   // VmRSS, bytes
}

// ReadProc samples process pid from /proc (Linux). ok is false when the
// process is gone or /proc is not there.
func ReadProc(pid int) (s ProcSample, ok bool) {
	if pid <= 0 || runtime.GOOS != "linux" {
		return s, false
	}
	p := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(p + "/stat")
	if err != nil {
		return s, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then state is field 3; utime and stime are 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUSeconds = float64(ut+st) / clockTicks
	status, err := os.Open(p + "/status")
	if err != nil {
		return s, false
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmHWM:"):
			s.PeakRSS = kibLine(line)
		case strings.HasPrefix(line, "VmRSS:"):
			s.RSS = kibLine(line)
		}
	}
	return s, true
}

func kibLine(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n << 10
}
