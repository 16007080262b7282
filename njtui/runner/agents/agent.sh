# The njtui Bash runtime agent (protocol 1, see docs/protocol.md). Run with bash:
#   bash agent.sh --journal PATH [--idle-timeout SECONDS]
#
# Bash builtins only — no external command — so it runs in an image that has bash and nothing
# else. Three processes share the work:
#   main     runs each cell by sourcing it at the top level, so variables, functions, aliases
#            and the working directory persist between cells; a cell's stdout and stderr go to
#            two pipes, its stdin is /dev/null;
#   emitter  the only writer of messages: it numbers them (seq), appends each to the journal,
#            then writes it to stdout; it reads the two output pipes a chunk at a time (so
#            partial lines arrive within milliseconds) and the control pipe where main and the
#            reader report; it answers `status` and ends the agent when idle;
#   reader   reads requests from stdin, passes cells to main in order, and turns `interrupt`
#            into SIGINT for the cell's process group.
# Pipes come from `exec {fd}<> <(:)`: a pipe opened read-write, shared by all three processes.

__njt_journal=""
__njt_idle=1200
while (($#)); do
    case $1 in
    --journal) __njt_journal=$2; shift 2 ;;
    --idle-timeout) __njt_idle=$2; shift 2 ;;
    *) shift ;;
    esac
done

# Seconds (possibly "12.5") to microseconds, for integer arithmetic.
__njt_us() {
    local whole=${1%%[.,]*} frac=
    [[ $1 == *[.,]* ]] && frac=${1#*[.,]}
    frac=${frac}000000
    REPLY=$((10#${whole:-0} * 1000000 + 10#${frac:0:6}))
}
__njt_now() { REPLY=${EPOCHREALTIME/[.,]/}; REPLY=$((10#$REPLY)); }
__njt_secs() { printf -v REPLY '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); }

__njt_us "$__njt_idle"; __njt_idle_us=$REPLY
read -r _ _ _ _ __njt_pgid _ </proc/$$/stat 2>/dev/null || __njt_pgid=0
__njt_main=$$
__njt_instance="bash-$$-${EPOCHREALTIME/[.,]/}-$RANDOM"
# The agent's own files live beside its journal (a private directory njtui made), never in a
# shared place like /tmp.
__njt_dir=.
[[ $__njt_journal == */* ]] && __njt_dir=${__njt_journal%/*}
__njt_cellfile="$__njt_dir/cell-$$.sh"
# Files a cell wrote to $NJTUI_RESULTS are copied here as it ends (see __njt_stage_results).
__njt_stage="$__njt_dir/files"
__njt_mark="$__njt_dir/results-mark"
__njt_probe="$__njt_dir/results-probe"
# Written by main to both output pipes when a cell has ended: what precedes it in a pipe is
# the cell's output, whatever process wrote it. It opens with US and closes with RS, bytes real
# output rarely holds, and the instance makes it unguessable.
__njt_end=$'\037'"njtui-cell-end-$__njt_instance"$'\036'
# A stop's interrupt normally ends the cell at once; one that ignores it is abandoned after this.
# NJTUI_SHUTDOWN_GRACE_MS sets it (tests on a loaded machine lengthen it); the cell never sees it.
__njt_grace_us=1000000
if [[ ${NJTUI_SHUTDOWN_GRACE_MS-} =~ ^[0-9]{1,7}$ ]]; then __njt_grace_us=$((10#$NJTUI_SHUTDOWN_GRACE_MS * 1000)); fi
unset NJTUI_SHUTDOWN_GRACE_MS
# Outside tools, used when the image has them (a bash-only image has none: builtins then).
__njt_cp=$(type -P cp 2>/dev/null)
__njt_rm=$(type -P rm 2>/dev/null)
__njt_mkdir=$(type -P mkdir 2>/dev/null)
printf -v __njt_controls '%b' '\001\002\003\004\005\006\007\010\013\014\016\017\020\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037'

# JSON string body of $1 in REPLY.
__njt_esc() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    if [[ $s == *["$__njt_controls"]* ]]; then
        local i c hex
        for ((i = 0; i < ${#__njt_controls}; i++)); do
            c=${__njt_controls:i:1}
            [[ $s == *"$c"* ]] || continue
            printf -v hex '\\u%04x' "'$c"
            s=${s//"$c"/$hex}
        done
    fi
    REPLY=$s
}

# The text of a JSON string body in REPLY (what the client's json.dumps produces).
__njt_unesc() {
    local s=$1 placeholder=$'\001' out= hex ch
    s=${s//\\\\/$placeholder}
    s=${s//\\n/$'\n'}
    s=${s//\\t/$'\t'}
    s=${s//\\r/$'\r'}
    s=${s//\\\"/\"}
    s=${s//\\\//\/}
    s=${s//\\b/$'\b'}
    s=${s//\\f/$'\f'}
    while [[ $s == *\\u* ]]; do
        out+=${s%%\\u*}
        s=${s#*\\u}
        hex=${s:0:4}
        s=${s:4}
        printf -v ch "\\u$hex"
        out+=$ch
    done
    out+=$s
    REPLY=${out//$placeholder/\\}
}

exec {__njt_out}<> <(:)
exec {__njt_err}<> <(:)
exec {__njt_ctl}<> <(:)
exec {__njt_req}<> <(:)
exec {__njt_never}<> <(:)
exec {__njt_ack}<> <(:)
exec {__njt_intp}<> <(:)
exec {__njt_stdin}<&0
exec 0</dev/null

# ---------------------------------------------------------------- emitter
__njt_emitter() {
    trap '' INT PIPE
    LC_NUMERIC=C
    local seq=0 running=null count=0 queued=0 journal_fd= now last sleep=0.001 line chunk rc finishing=0
    local held_stdout= held_stderr= ended_stdout=0 ended_stderr=0
    local reader_pid=0 interrupted= interrupt_again=0 interrupt_tries=0
    local -a f
    if [[ -n $__njt_journal ]]; then
        : >"$__njt_journal"
        exec {journal_fd}>>"$__njt_journal"
    fi
    __njt_now; last=$REPLY

    emit() { # exec-json type fields
        local message
        seq=$((seq + 1))
        message="{\"seq\":$seq,\"exec\":$1,\"type\":\"$2\",\"t\":$EPOCHREALTIME$3}"
        [[ -n $journal_fd ]] && printf '%s\n' "$message" >&"$journal_fd"
        printf '%s\n' "$message" 2>/dev/null
    }
    stream() { # exec-json name text
        [[ -n $3 ]] || return 0
        __njt_esc "$3"
        emit "$1" stream ",\"name\":\"$2\",\"text\":\"$REPLY\""
    }
    take() { # name text: output read from a pipe, up to and past a cell's end marker
        local name=$1 text held ended tail
        held=held_$name ended=ended_$name
        text=${!held}$2
        printf -v "$held" '%s' ''
        if ((${!ended})); then
            stream null "$name" "$text" # after its cell's end: a background process's output
        elif [[ $text == *"$__njt_end"* ]]; then
            stream "$running" "$name" "${text%%"$__njt_end"*}"
            printf -v "$ended" 1
            stream null "$name" "${text#*"$__njt_end"}"
        else
            # A marker may be cut between two reads: hold back what could be its beginning.
            tail=${text##*$'\037'}
            if [[ $text == *$'\037'* && $__njt_end == $'\037'"$tail"* ]]; then
                printf -v "$held" '%s' $'\037'"$tail"
                text=${text%$'\037'*}
            fi
            stream "$running" "$name" "$text"
        fi
    }
    chunk_from() { # fd name: what the pipe has now; 1 if nothing
        # `read -N` buffers what it read but a timeout cut short, and hands that out on the next
        # read of any descriptor: so a short read is followed by reads of the same pipe until
        # one comes back empty or full, and only then is another pipe read.
        # The first read waits a little to gather a chunk; the ones after it only empty that
        # buffer (it is handed out without waiting), so they give up almost at once.
        local got=1 wait=0.002
        while :; do
            chunk=
            IFS= read -r -d '' -N 512 -t "$wait" -u "$1" chunk
            rc=$?
            [[ -n $chunk ]] || return $got
            got=0 wait=0.0002
            take "$2" "$chunk"
            ((rc == 0)) && return 0
        done
    }
    drain() { # all output written so far, alternating the two streams
        local more=1
        while ((more)); do
            more=0
            if read -t 0 -u "$__njt_out"; then chunk_from "$__njt_out" stdout && more=1; fi
            if read -t 0 -u "$__njt_err"; then chunk_from "$__njt_err" stderr && more=1; fi
        done
    }
    drain_to_end() { # a cell's output up to the end markers main wrote before its `done`
        # The markers are in the pipes already, so plain reads up to their closing RS end at
        # once, without a timeout (and with `-d`, bash buffers nothing: chunk_from left its
        # buffer empty).
        local name fd held ended text rest opening=${__njt_end%$'\036'}
        for name in stdout stderr; do
            ended=ended_$name
            if ((${!ended})); then continue; fi
            held=held_$name
            fd=$__njt_out
            [[ $name == stdout ]] || fd=$__njt_err
            text=${!held}
            printf -v "$held" '%s' ''
            while :; do
                rest=
                IFS= read -r -d $'\036' -u "$fd" rest
                text+=$rest
                if [[ $text == *"$opening" ]]; then
                    stream "$running" "$name" "${text%"$opening"}"
                    break
                fi
                text+=$'\036' # one of the output's own
            done
        done
        ended_stdout=0 ended_stderr=0
    }
    control() { # one line main or the reader sent
        IFS=$'\t' read -r -a f <<<"$1"
        case ${f[0]} in
        Q) # queued: exec meta
            local position=$queued
            [[ $running == null ]] || position=$((position + 1))
            emit "\"${f[1]}\"" queued ",\"meta\":${f[2]},\"position\":$position"
            queued=$((queued + 1)) ;;
        S) # start: exec count meta
            queued=$((queued > 0 ? queued - 1 : 0))
            running="\"${f[1]}\""
            count=${f[2]}
            emit "$running" start ",\"meta\":${f[3]},\"count\":$count"
            printf 'A\n' >&"$__njt_ack" ;;
        D) # done: exec status count duration exit-code files
            drain_to_end
            if [[ ${f[2]} == error && ${f[5]} != 0 ]]; then
                emit "\"${f[1]}\"" error ",\"ename\":\"ExitStatus\",\"evalue\":\"exit status ${f[5]}\",\"traceback\":\"\""
            fi
            local reason=
            if [[ ${f[2]} == interrupted && -n $__njt_ending ]]; then reason=",\"reason\":\"$__njt_ending\""; fi
            emit "\"${f[1]}\"" done ",\"status\":\"${f[2]}\",\"count\":${f[3]},\"duration\":${f[4]},\"exit_code\":${f[5]},\"files\":[${f[6]}]$reason"
            running=null
            __njt_now; last=$REPLY
            printf 'A\n' >&"$__njt_ack" ;;
        X) # a queued cell dropped by an interrupt
            queued=$((queued > 0 ? queued - 1 : 0))
            emit "\"${f[1]}\"" done ",\"status\":\"interrupted\",\"count\":null,\"duration\":0.0"
            __njt_now; last=$REPLY ;;
        T) # status
            local state=busy idle_for=0
            if [[ $running == null ]]; then
                __njt_now; __njt_secs $((REPLY - last))
                state=idle idle_for=$REPLY
            fi
            emit null status ",\"state\":\"$state\",\"running\":$running,\"queued\":$queued,\"count\":$count,\"idle_for\":$idle_for" ;;
        L) # log: level text
            __njt_esc "${f[2]}"
            emit null log ",\"level\":\"${f[1]}\",\"text\":\"$REPLY\"" ;;
        E) ((finishing)) || finish "${f[1]}" ;;
        R) reader_pid=${f[1]} ;;
        I) # the reader has interrupted the running cell: see that it ends
            if [[ $running != null ]]; then
                interrupted=$running interrupt_tries=0
                __njt_now; interrupt_again=$((REPLY + 100000))
            fi ;;
        esac
    }
    interrupt_again() {
        # A SIGINT that comes while main is starting a command (between its fork and exec) is
        # lost to it: the cell's sleep would sleep on. Its processes get another, while the same
        # cell runs (no other can start before this emitter acknowledges it): ten times 0.1 s
        # apart, then, for a machine so loaded that a fork takes longer, 0.5 s apart, 30 in all.
        [[ -n $interrupted ]] || return 0
        if [[ $running != "$interrupted" ]] || ((interrupt_tries >= 30)); then
            interrupted=
            return 0
        fi
        __njt_now
        ((REPLY >= interrupt_again)) || return 0
        interrupt_tries=$((interrupt_tries + 1))
        interrupt_again=$((REPLY + (interrupt_tries < 10 ? 100000 : 500000)))
        __njt_interrupt_children "$reader_pid"
    }
    finish() { # reason
        local deadline abandoned=0
        finishing=1
        case $1 in
        shutdown) __njt_ending="the runtime was stopped" ;;
        "stdin closed") __njt_ending="the runtime's connection closed" ;;
        esac
        # The reader has interrupted the running cell: its `done` normally follows at once. The
        # interrupt is repeated as for any other (its first SIGINT may come between a fork and
        # an exec) until the grace runs out.
        __njt_now; deadline=$((REPLY + __njt_grace_us))
        if [[ $running != null ]]; then
            interrupted=$running interrupt_tries=0 interrupt_again=$((REPLY + 100000))
        fi
        while [[ $running != null ]]; do
            interrupt_again
            __njt_now
            ((REPLY < deadline)) || break
            if read -t 0 -u "$__njt_ctl"; then
                IFS= read -r -u "$__njt_ctl" line
                control "$line"
            else
                drain
                read -t 0.005 -u "$__njt_never"
            fi
        done
        drain
        if [[ $running != null ]]; then
            abandoned=1
            emit "$running" done ",\"status\":\"interrupted\",\"count\":$count,\"duration\":null,\"files\":[],\"reason\":\"$__njt_ending\""
        fi
        emit null exit ",\"reason\":\"$1\""
        kill -TERM "$__njt_main" 2>/dev/null
        # A TERM that lands just as main blocks in a read may never run its trap, and these
        # pipes never end (each process holds both ends): main is also told on each pipe it
        # may be waiting on.
        printf 'EXIT\n' >&"$__njt_req"
        printf 'EXIT\n' >&"$__njt_ack"
        ((reader_pid)) && kill -TERM "$reader_pid" 2>/dev/null
        if ((abandoned)); then
            # The cell ignores its interrupt and holds main: it ends with the runtime.
            if ((__njt_pgid == __njt_main)); then kill -KILL -- "-$__njt_pgid" 2>/dev/null; fi
            kill -KILL "$__njt_main" 2>/dev/null
        fi
        builtin exit 0
    }

    __njt_esc "$__njt_instance"
    emit null hello ",\"agent\":\"bash\",\"protocol\":1,\"instance\":\"$REPLY\",\"pid\":$__njt_main,\"language\":\"bash\",\"idle_timeout\":$__njt_idle"
    while :; do
        local got=0
        # Main's reports first: at a cell's end its output is read up to the end markers with
        # plain reads, without waiting for more that will not come.
        if read -t 0 -u "$__njt_ctl"; then
            got=1
            IFS= read -r -u "$__njt_ctl" line
            control "$line"
        fi
        if read -t 0 -u "$__njt_out"; then chunk_from "$__njt_out" stdout && got=1; fi
        if read -t 0 -u "$__njt_err"; then chunk_from "$__njt_err" stderr && got=1; fi
        interrupt_again
        if ((got)); then
            sleep=0.001
            continue
        fi
        if [[ $running == null ]] && ((queued == 0)); then
            __njt_now
            ((REPLY - last >= __njt_idle_us)) && finish idle
        fi
        read -t "$sleep" -u "$__njt_never"
        case $sleep in 0.001) sleep=0.005 ;; 0.005) sleep=0.02 ;; esac
    done
}

# ---------------------------------------------------------------- reader
__njt_reader() {
    # SIGINT reaches the whole process group; here it means "tell main the queue is void".
    trap 'printf "INTERRUPT\n" >&"$__njt_req"' INT
    trap '' PIPE
    local line op exec meta rc
    printf 'R\t%s\n' "$BASHPID" >&"$__njt_ctl" # so the emitter never interrupts the reader
    while :; do
        IFS= read -r line
        rc=$?
        if ((rc > 128)); then continue; fi # a signal, not the end of input
        if ((rc != 0)) && [[ -z $line ]]; then break; fi
        op=${line#*\"op\":\"}
        op=${op%%\"*}
        case $op in
        execute)
            exec=${line#*\"exec\":\"}
            exec=${exec%%\"*}
            meta=${line##*\"meta\":}
            meta=${meta%\}}
            [[ $line == *\"meta\":* ]] || meta='{}'
            printf 'Q\t%s\t%s\n' "$exec" "$meta" >&"$__njt_ctl"
            printf 'EXEC\t%s\n' "$line" >&"$__njt_req" ;;
        interrupt)
            __njt_interrupt
            printf 'I\n' >&"$__njt_ctl" ;;
        status) printf 'T\n' >&"$__njt_ctl" ;;
        secrets) printf 'SECRETS\t%s\n' "$line" >&"$__njt_req" ;;
        release)
            exec=${line#*\"exec\":\"}
            exec=${exec%%\"*}
            __njt_release "$exec" ;;
        shutdown)
            # The emitter learns why first: the interrupted cell's `done` must carry the reason.
            printf 'E\tshutdown\n' >&"$__njt_ctl"
            __njt_interrupt
            break ;;
        *) printf 'L\twarning\t%s\n' "bad request: ${line:0:200}" >&"$__njt_ctl" ;;
        esac
    done
    if [[ $op != shutdown ]]; then
        # Nobody can talk to the runtime any more: end what runs, record it, exit.
        printf 'E\tstdin closed\n' >&"$__njt_ctl"
        __njt_interrupt
    fi
}

# A client has stored an execution's files: their staged copies go (emptied where no `rm`).
__njt_release() {
    [[ $1 =~ ^[A-Za-z0-9_-]{1,64}$ ]] || return 0
    local staged
    for staged in "$__njt_stage/$1".*; do
        [[ -f $staged ]] || continue
        if [[ -n $__njt_rm ]]; then "$__njt_rm" -f -- "$staged"; else : >"$staged"; fi
    done
}

# SIGINT to main's children (found in /proc: builtins only), but the caller and the agent's
# own process given as $1.
__njt_interrupt_children() {
    local stat pid ppid rest
    for stat in /proc/[0-9]*/stat; do
        read -r pid _ _ ppid rest <"$stat" 2>/dev/null || continue
        ((ppid == __njt_main && pid != BASHPID && pid != $1)) && kill -INT "$pid" 2>/dev/null
    done
}

__njt_interrupt() {
    # The byte tells main for certain (bash may not run its INT trap when the foreground child
    # dies of the same SIGINT); the signal stops what runs.
    printf 'x' >&"$__njt_intp"
    if ((__njt_pgid == __njt_main)); then
        kill -INT -- "-$__njt_pgid" 2>/dev/null # the cell and its children; the reader's trap marks the queue
    else
        # Not a group leader (started by something that shares its group): signal main and
        # its children only.
        __njt_interrupt_children "$__njt_emitter_pid"
        kill -INT "$__njt_main" 2>/dev/null
        printf 'INTERRUPT\n' >&"$__njt_req"
    fi
}

# ---------------------------------------------------------------- main
__njt_emitter &
__njt_emitter_pid=$!
__njt_reader <&"$__njt_stdin" &
__njt_reader=$!
exec {__njt_stdin}<&-
exec 1>/dev/null

__njt_two() { return 2; }
exit() {
    # `exit` in a cell ends the cell, not the runtime; in a subshell it is the real exit.
    if ((BASH_SUBSHELL > 0)) || [[ -z $__njt_in_cell ]]; then builtin exit "$@"; fi
    __njt_exit_code=${1-$?}
    __njt_stop=exit
    return "$__njt_exit_code"
}

# The emitter must have announced a cell's start before its output, and have emitted all of it
# before the next cell starts: main waits for its acknowledgement at both ends of a cell.
__njt_await_ack() {
    local ack
    while :; do
        IFS= read -r -u "$__njt_ack" ack
        (($? > 128)) && continue
        [[ $ack != EXIT ]] || builtin exit 0
        return 0
    done
}

# Secrets become exported variables and files in $NJTUI_SECRETS_DIR (a tmpfs in containers).
__njt_set_secrets() {
    local object=${1#*\"env\":\{} name
    local pair='^"([A-Za-z_][A-Za-z0-9_]*)":"(([^"\\]|\\.)*)",?(.*)$'
    while [[ $object =~ $pair ]]; do
        name=${BASH_REMATCH[1]}
        object=${BASH_REMATCH[4]}
        __njt_unesc "${BASH_REMATCH[2]}"
        export "$name=$REPLY"
        if [[ -n $NJTUI_SECRETS_DIR ]]; then
            (umask 077 && printf '%s' "$REPLY" >"$NJTUI_SECRETS_DIR/$name") 2>/dev/null
        fi
    done
}

# Copies a file byte for byte. Without `cp`: NUL-separated segments, each written back
# followed by the NUL that ended it (read -d '' fails only on the last, unterminated one).
__njt_copy() {
    if [[ -n $__njt_cp ]]; then
        "$__njt_cp" -- "$1" "$2" 2>/dev/null
        return
    fi
    local LC_ALL=C segment
    {
        while IFS= read -r -d '' segment; do printf '%s\0' "$segment"; done
        printf '%s' "$segment"
    } <"$1" >"$2" 2>/dev/null
}

# After a cell: the files under $NJTUI_RESULTS it created or changed (newer than the mark made
# when the previous cell ended) are copied to the stage before its `done`, so the next cell
# cannot change them before a client collects them (all of them when the directory was empty
# as the cell started). Sets __njt_files (JSON objects).
__njt_stage_results() {
    __njt_files=
    local root=${NJTUI_RESULTS%/} file name number=0 options
    [[ -n $root && -d $root && $1 =~ ^[A-Za-z0-9_-]{1,64}$ ]] || return 0
    if [[ ! -d $__njt_stage ]]; then
        [[ -n $__njt_mkdir ]] && "$__njt_mkdir" -m 700 -p -- "$__njt_stage" 2>/dev/null
        [[ -d $__njt_stage ]] || return 0
    fi
    # The cell's own shell options stay as they were (no subshell: a fork per cell is slow).
    local restore=
    shopt -q globstar || restore+=" globstar"
    shopt -q dotglob || restore+=" dotglob"
    shopt -q nullglob || restore+=" nullglob"
    shopt -s globstar dotglob nullglob
    local -a found=("$root"/**)
    [[ -z $restore ]] || shopt -u $restore
    for file in "${found[@]}"; do
        [[ -f $file && ! -L $file ]] || continue
        ((__njt_results_were_empty)) || [[ $file -nt $__njt_mark ]] || continue
        name=${file#"$root"/}
        __njt_copy "$file" "$__njt_stage/$1.$number" || continue
        __njt_esc "$name"
        __njt_files+="${__njt_files:+,}{\"name\":\"$REPLY\",\"staged\":\"$1.$number\"}"
        number=$((number + 1))
    done
}

# File times are coarse (a clock tick of some milliseconds): a cell starts only once the clock
# has moved past the mark, so everything it writes is newer than the mark. With no file there
# yet, every file the cell leaves is new: no need to wait.
__njt_past_mark() {
    __njt_results_were_empty=1
    [[ -n $NJTUI_RESULTS && -d $NJTUI_RESULTS ]] || return 0
    local entry
    for entry in "${NJTUI_RESULTS%/}"/* "${NJTUI_RESULTS%/}"/.[!.]*; do
        [[ -e $entry || -L $entry ]] && break
    done
    [[ -e $entry || -L $entry ]] || return 0
    __njt_results_were_empty=0
    : >"$__njt_probe" 2>/dev/null || return 0
    until [[ $__njt_probe -nt $__njt_mark ]]; do : >"$__njt_probe"; done
}

: >"$__njt_mark" 2>/dev/null
__njt_stop=
__njt_count=0
trap '__njt_stop=interrupt' INT
trap '' PIPE
trap 'builtin exit 0' TERM
while :; do
    IFS= read -r -u "$__njt_req" __njt_request
    (($? > 128)) && continue # interrupted while waiting: the marker follows
    case $__njt_request in
    EXIT) builtin exit 0 ;;
    INTERRUPT)
        __njt_stop=
        while read -t 0 -u "$__njt_intp"; do read -r -N 1 -u "$__njt_intp" _; done
        continue ;;
    EXEC$'\t'*) ;;
    SECRETS$'\t'*)
        __njt_set_secrets "${__njt_request#SECRETS$'\t'}"
        continue ;;
    *) continue ;;
    esac
    __njt_request=${__njt_request#EXEC$'\t'}
    __njt_exec=${__njt_request#*\"exec\":\"}
    __njt_exec=${__njt_exec%%\"*}
    if [[ $__njt_stop == interrupt ]]; then
        printf 'X\t%s\n' "$__njt_exec" >&"$__njt_ctl"
        continue
    fi
    __njt_meta=${__njt_request##*\"meta\":}
    __njt_meta=${__njt_meta%\}}
    [[ $__njt_request == *\"meta\":* ]] || __njt_meta='{}'
    __njt_code=${__njt_request#*\"code\":\"}
    __njt_code=${__njt_code%\",\"meta\":*}
    [[ $__njt_request == *\"meta\":* ]] || __njt_code=${__njt_code%\"\}}
    __njt_unesc "$__njt_code"
    printf '%s\n' "$REPLY" >"$__njt_cellfile"
    __njt_count=$((__njt_count + 1))
    printf 'S\t%s\t%d\t%s\n' "$__njt_exec" "$__njt_count" "$__njt_meta" >&"$__njt_ctl"
    __njt_past_mark
    __njt_await_ack
    __njt_now; __njt_started=$REPLY
    __njt_exit_code=
    __njt_errexit=0
    __njt_in_cell=1
    shopt -s extdebug
    # Before each command of the cell: `set -e` is emulated (a real one would end the agent),
    # and a stop (interrupt, exit, errexit) returns from the sourced cell, abandoning the rest.
    trap '(( __njt_errexit )) && __njt_stop=errexit' ERR
    # Only commands of the cell itself return (a DEBUG trap returning non-zero elsewhere, here
    # in the agent, would skip the agent's own commands).
    trap '[[ $- != *e* ]] || { set +e; __njt_errexit=1; }; ! read -t 0 -u "$__njt_intp" || __njt_stop=interrupt; [[ -z $__njt_stop || ${BASH_SOURCE[0]} != "$__njt_cellfile" ]] || __njt_two' DEBUG
    . "$__njt_cellfile" </dev/null >&"$__njt_out" 2>&"$__njt_err"
    __njt_rc=$?
    trap - DEBUG
    trap - ERR
    shopt -u extdebug
    __njt_in_cell=
    __njt_now; __njt_secs $((REPLY - __njt_started)); __njt_duration=$REPLY
    case $__njt_stop in
    interrupt) __njt_status=interrupted; __njt_rc=130 ;;
    exit) __njt_rc=${__njt_exit_code:-0}; __njt_stop= ;;
    errexit) __njt_stop= ;;
    esac
    if [[ $__njt_status != interrupted ]]; then
        if ((__njt_rc == 0)); then __njt_status=ok; else __njt_status=error; fi
    fi
    __njt_stage_results "$__njt_exec"
    : >"$__njt_mark" 2>/dev/null
    # The end markers, then `done`: the emitter reads each pipe up to its marker first.
    printf '%s' "$__njt_end" >&"$__njt_out"
    printf '%s' "$__njt_end" >&"$__njt_err"
    printf 'D\t%s\t%s\t%d\t%s\t%d\t%s\n' "$__njt_exec" "$__njt_status" "$__njt_count" "$__njt_duration" "$__njt_rc" "$__njt_files" >&"$__njt_ctl"
    __njt_await_ack
    __njt_status=
done
