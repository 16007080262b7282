# The njtui Bash runtime agent (protocol 1, see docs/protocol.md). Run with bash:
#   bash agent.sh --journal PATH [--idle-timeout SECONDS]
#
# Bash builtins only — no external command — so it runs in an image that has bash and nothing
# else. Five processes share the work, and each blocks in a read while there is nothing to do
# (an idle agent takes no CPU time):
#   main       runs each cell by sourcing it at the top level, so variables, functions, aliases
#              and the working directory persist between cells; a cell's stdout and stderr go to
#              two pipes, its stdin is /dev/null; between cells it answers completions;
#   forwarders one per output pipe: each reads its pipe a chunk at a time (so partial lines
#              arrive within milliseconds) and hands the chunks to the emitter; a cell whose
#              background process keeps its pipes leaves them to their forwarders, and the next
#              cell gets new ones (see __njt_open_output);
#   emitter    the only writer of messages: it numbers them (seq), appends each to the journal,
#              then writes it to stdout; it reads the control pipe where main, the reader and the
#              forwarders report; it answers `status` and ends the agent when idle;
#   reader     reads requests from stdin, passes cells to main in order, and turns `interrupt`
#              into SIGINT for the cell's process group.
# Pipes come from `exec {fd}<> <(:)`: a pipe opened read-write, shared by all the processes
# (the cells' output pipes, each with separate ends, from __njt_pipe).

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
# Main writes each completion answer here for the emitter, the only writer of the agent's output.
__njt_completion="$__njt_dir/completion-$$"
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
__njt_sort=$(type -P sort 2>/dev/null)
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

exec {__njt_fwd}<> <(:)
exec {__njt_ctl}<> <(:)
exec {__njt_req}<> <(:)
exec {__njt_ack}<> <(:)
exec {__njt_intp}<> <(:)
exec {__njt_stdin}<&0
exec 0</dev/null

# The fields of a `complete` request (key order: op, id, code, cursor, as the client writes it).
__njt_code() { # the request line: its code, unescaped, in REPLY
    local code=${1#*\"code\":\"}
    code=${code%\"*\"cursor\":*}
    [[ $1 == *\"cursor\":* ]] || code=${code%\"*}
    __njt_unesc "$code"
}
__njt_cursor() { # the request line: its cursor (characters into the code) in REPLY
    local cursor=${1##*\"cursor\":}
    cursor=${cursor%%[!0-9]*}
    if [[ $1 == *\"cursor\":[0-9]* && ${#cursor} -le 9 ]]; then
        REPLY=$((10#$cursor))
    else
        __njt_code "$1"
        REPLY=${#REPLY}
    fi
}

# ---------------------------------------------------------------- forwarders
# One per output pipe: it waits for output with a blocking read (an idle agent never wakes),
# gathers what follows within 2 ms into a chunk, and hands it to the emitter on the control pipe
# as `O<1|2><c|n><length>\t<JSON string body>\n`, one write (at most 4 KiB: atomic among the
# pipe's writers); `c`: the running cell's output, `n`: output after its cell ended (exec null).
# It works on bytes (C locale) and holds back a UTF-8 sequence cut at a chunk's end. It reports
# a cell's end marker as `M<1|2>` in its place in the output.
#
# Each pipe serves one cell at a time (see __njt_open_output): main holds its write end only
# while the cell runs, so once the cell has ended the pipe reaches its end as soon as nothing
# else holds it. Then the forwarder tells main it is free (`F`), and waits on its wake pipe for
# main's `g` (the next cell writes here) or its end (main is gone, or chose another pipe). Output
# after the marker is a background process's that still holds the pipe: the forwarder tells
# main so (`B`: main gives the next cell a new pipe and forwarder) and forwards it until the
# pipe ends, then exits. Both verdicts go on main's own pipe, with the stream and generation.
__njt_forwarder() { # 1|2 generation data-fd wake-fd
    trap '' INT PIPE
    LC_ALL=C
    local stream=$1 generation=$2 fd=$3 wake=$4 chunk more text held= tail rc tag=c verdict= go ended
    # Only main holds a wake pipe's write end: its end tells a waiting forwarder that main is gone.
    [[ -z ${__njt_wake_1-} ]] || exec {__njt_wake_1}>&-
    [[ -z ${__njt_wake_2-} ]] || exec {__njt_wake_2}>&-
    send() { # text
        [[ -n $1 ]] || return 0
        __njt_esc "$1"
        if ((${#REPLY} > 4000)); then # (512 bytes of control characters, escaped, are not)
            local half=$((${#1} / 2))
            send "${1:0:half}"
            send "${1:half}"
            return 0
        fi
        printf 'O%s%s%d\t%s\n' "$stream" "$tag" "${#REPLY}" "$REPLY" >&"$__njt_ctl"
    }
    tell() { # F|B: the pipe's verdict, once per cell
        [[ -z $verdict ]] || return 0
        verdict=$1
        printf '%s\t%s\t%s\n' "$1" "$stream" "$generation" >&"$__njt_fwd"
    }
    await_go() { # until main's go (0), or the end of the wake pipe (1)
        while :; do
            go=
            IFS= read -r -u "$wake" go
            rc=$?
            ((rc > 128)) && continue
            [[ $go == g ]] && return 0
            ((rc == 0)) || return 1
        done
    }
    await_go || return 0
    while :; do
        ended=0
        chunk=
        IFS= read -r -d '' -N 1 -u "$fd" chunk
        rc=$?
        if ((rc != 0)) && [[ -z $chunk ]]; then
            ((rc > 128)) && continue
            ended=1
        else
            # `read -N` with a timeout keeps what it read but did not return for the next read;
            # only this pipe is read here, so that is the right place for it. It returns at once
            # at the pipe's end (status 1): main closes its end right after the marker.
            more=
            IFS= read -r -d '' -N 511 -t 0.002 -u "$fd" more
            (($? == 1)) && ended=1
            text=$held$chunk$more
            held=
            if [[ $tag == c ]]; then
                if [[ $text == *"$__njt_end"* ]]; then
                    send "${text%%"$__njt_end"*}"
                    text=${text#*"$__njt_end"}
                    tag=n
                    # At the pipe's end already (nothing else holds it): main knows before `done`.
                    if [[ -n $text ]]; then tell B; elif ((ended)); then tell F; fi
                    printf 'M%s\n' "$stream" >&"$__njt_ctl"
                else
                    # A marker may be cut between two reads: hold back what could be its beginning.
                    tail=${text##*$'\037'}
                    if [[ $text == *$'\037'* && $__njt_end == $'\037'"$tail"* ]]; then
                        held=$'\037'"$tail"
                    fi
                fi
            else
                tell B
            fi
            if [[ -z $held ]]; then
                if [[ $text == *[$'\xc0'-$'\xff'] ]]; then
                    held=${text:${#text}-1}
                elif [[ $text == *[$'\xe0'-$'\xff'][$'\x80'-$'\xbf'] ]]; then
                    held=${text:${#text}-2}
                elif [[ $text == *[$'\xf0'-$'\xff'][$'\x80'-$'\xbf'][$'\x80'-$'\xbf'] ]]; then
                    held=${text:${#text}-3}
                fi
            fi
            text=${text:0:${#text}-${#held}}
            send "$text"
        fi
        ((ended)) || continue
        # The end of the pipe: nothing holds it any more. It is not read again before main's go:
        # once main knows it is free, main may open it for the next cell at any moment.
        send "$held"
        held=
        [[ $tag == n && $verdict != B ]] || break # main gone mid-cell, or a pipe main gave up
        tell F
        await_go || break
        tag=c verdict=
    done
}

# ---------------------------------------------------------------- emitter
__njt_emitter() {
    trap '' INT PIPE
    LC_ALL=C # lengths are bytes, as the forwarders count them
    local seq=0 running=null count=0 queued=0 journal_fd= now last finishing=0
    local ended_1=0 ended_2=0 finished_cell=
    local reader_pid=0 interrupted= interrupt_again=0 interrupt_tries=0
    local -a f
    local -A awaited # completion requests main is answering, by id
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
    answer() { # a message for one client: no seq, not journaled
        printf '%s\n' "$1" 2>/dev/null
    }
    take() { # the rest of a forwarder's O message: output, the cell's until its end marker
        local header text name=stdout exec=null
        IFS= read -r -d $'\t' -u "$__njt_ctl" header
        IFS= read -r -N $((10#${header:2} + 1)) -u "$__njt_ctl" text
        [[ ${header:0:1} == 1 ]] || name=stderr
        # After its cell's end (n): a background process's output, no cell's.
        [[ ${header:1:1} != c ]] || exec=$running
        emit "$exec" stream ",\"name\":\"$name\",\"text\":\"${text%$'\n'}\""
    }
    end_cell() { # main has ended the cell (D) and both streams have passed its end marker
        [[ -n $finished_cell ]] && ((ended_1 && ended_2)) || return 0
        IFS=$'\t' read -r -a f <<<"$finished_cell"
        finished_cell= ended_1=0 ended_2=0
        if [[ ${f[2]} == error && ${f[5]} != 0 ]]; then
            emit "\"${f[1]}\"" error ",\"ename\":\"ExitStatus\",\"evalue\":\"exit status ${f[5]}\",\"traceback\":\"\""
        fi
        local reason=
        if [[ ${f[2]} == interrupted && -n $__njt_ending ]]; then reason=",\"reason\":\"$__njt_ending\""; fi
        emit "\"${f[1]}\"" done ",\"status\":\"${f[2]}\",\"count\":${f[3]},\"duration\":${f[4]},\"exit_code\":${f[5]},\"files\":[${f[6]}]$reason"
        running=null
        __njt_now; last=$REPLY
        printf 'A\n' >&"$__njt_ack"
    }
    complete() { # the reader's C: id cursor
        # Main, which has the cell's variables, functions and directory, answers while it is idle
        # (the reader has passed it the request). While a cell runs or waits, nobody can: the
        # answer is no matches, at once, and main's later one is dropped.
        if [[ $running == null ]] && ((queued == 0 && !finishing)); then
            awaited[${f[1]}]=1
        else
            answer "{\"type\":\"completion\",\"id\":\"${f[1]}\",\"matches\":[],\"start\":${f[2]},\"end\":${f[2]}}"
        fi
    }
    control() { # one line main or the reader sent
        IFS=$'\t' read -r -a f <<<"$1"
        case ${f[0]} in
        M1) ended_1=1; end_cell ;;
        M2) ended_2=1; end_cell ;;
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
            finished_cell=$1
            end_cell ;;
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
        C) complete ;;
        P) # main's completion answer, in its file: id
            if [[ -n ${awaited[${f[1]}]-} ]]; then
                unset -v "awaited[${f[1]}]"
                local -a answered=()
                mapfile -t answered <"$__njt_completion"
                answer "${answered[0]-}"
            fi
            printf 'A\n' >&"$__njt_ack" ;;
        U) answer "{\"type\":\"unsupported\",\"id\":\"${f[1]}\",\"op\":\"${f[2]}\"}" ;;
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
    receive() { # [µs]: takes one message, waiting for it that long at most (else for ever)
        local kind= rest=
        if [[ -n $1 ]]; then
            __njt_secs $(($1 > 0 ? $1 : 1))
            IFS= read -r -N 1 -t "$REPLY" -u "$__njt_ctl" kind
        else
            IFS= read -r -N 1 -u "$__njt_ctl" kind
        fi
        case $kind in
        '' | $'\n') return 1 ;;
        O) take ;;
        *)
            IFS= read -r -u "$__njt_ctl" rest
            control "$kind$rest" ;;
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
        local deadline wait abandoned=0
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
            wait=$((deadline - REPLY))
            if [[ -n $interrupted ]] && ((interrupt_again - REPLY < wait)); then wait=$((interrupt_again - REPLY)); fi
            receive "$wait"
        done
        # What the forwarders have handed over already.
        while read -t 0 -u "$__njt_ctl"; do receive "" || break; done
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
        # The forwarders end with main: their pipes and wake pipes end.
        if ((abandoned)); then
            # The cell ignores its interrupt and holds main: it ends with the runtime.
            if ((__njt_pgid == __njt_main)); then kill -KILL -- "-$__njt_pgid" 2>/dev/null; fi
            kill -KILL "$__njt_main" 2>/dev/null
        fi
        builtin exit 0
    }

    __njt_esc "$__njt_instance"
    emit null hello ",\"agent\":\"bash\",\"protocol\":1,\"instance\":\"$REPLY\",\"pid\":$__njt_main,\"language\":\"bash\",\"idle_timeout\":$__njt_idle"
    # Blocks on the control pipe: only a repeated interrupt or the idle timeout set a deadline.
    while :; do
        __njt_now
        if [[ -n $interrupted ]]; then
            if ((REPLY >= interrupt_again)); then
                interrupt_again
                continue
            fi
            receive $((interrupt_again - REPLY))
        elif [[ $running == null ]] && ((queued == 0)); then
            ((REPLY - last < __njt_idle_us)) || finish idle
            receive $((last + __njt_idle_us - REPLY))
        else
            receive
        fi
    done
}

# ---------------------------------------------------------------- reader
__njt_reader() {
    # SIGINT reaches the whole process group; here it means "tell main the queue is void".
    trap 'printf "INTERRUPT\n" >&"$__njt_req"' INT
    trap '' PIPE
    local line op exec meta rc id
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
        complete)
            id=${line#*\"id\":\"}
            id=${id%%\"*}
            if [[ $line == *\"id\":\"* && $id =~ ^[A-Za-z0-9_.:-]{1,128}$ ]]; then
                # The emitter first: it must know the request before main can answer it.
                __njt_cursor "$line"
                printf 'C\t%s\t%s\n' "$id" "$REPLY" >&"$__njt_ctl"
                printf 'COMPLETE\t%s\n' "$line" >&"$__njt_req"
            else
                printf 'L\twarning\t%s\n' "bad request: ${line:0:200}" >&"$__njt_ctl"
            fi ;;
        shutdown)
            # The emitter learns why first: the interrupted cell's `done` must carry the reason.
            printf 'E\tshutdown\n' >&"$__njt_ctl"
            __njt_interrupt
            break ;;
        *)
            id=${line#*\"id\":\"}
            id=${id%%\"*}
            if [[ $line == *\"id\":\"* && $id =~ ^[A-Za-z0-9_.:-]{1,128}$ && $op =~ ^[A-Za-z0-9_-]{1,64}$ ]]; then
                # A request from a newer client that waits for its answer: it gets one.
                printf 'U\t%s\t%s\n' "$id" "$op" >&"$__njt_ctl"
            else
                printf 'L\twarning\t%s\n' "bad request: ${line:0:200}" >&"$__njt_ctl"
            fi ;;
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
# Set before the first fork: the emitter may end main (a closed stdin) as soon as it has said
# hello, and a TERM before the trap killed main by the signal. Subshells reset a caught trap.
trap '__njt_stop=interrupt' INT
trap '' PIPE
trap 'builtin exit 0' TERM
__njt_emitter &
__njt_emitter_pid=$!
__njt_reader <&"$__njt_stdin" &
__njt_reader=$!
exec {__njt_stdin}<&-
exec 1>/dev/null

# ---------------------------------------------------------------- a cell's output pipes
# Each cell writes to a pipe per stream that nothing else holds: the previous cell's, once its
# forwarder found it free, else a new one with a forwarder of its own. A cell that leaves a
# background process holding its pipes so gets nothing of what that process writes later: its
# old forwarder forwards that as exec null until the pipe ends (docs/protocol.md). Main holds
# each pipe's read end (to open its write end again), a write end of its forwarder's wake pipe,
# and the pipe's write end only while a cell runs.

# A new pipe, the fd of its read end in REPLY: a here-string's (a pipe from bash 5.1 on, without
# a fork), else a pipeline's (its last part runs here). Neither is a background job: `$!`, the
# cells' last background process, stays theirs.
__njt_pipe() {
    local fd lastpipe=1
    exec {fd}<<<''
    if [[ -p /proc/self/fd/$fd ]]; then
        IFS= read -r -u "$fd" REPLY # the here-string's newline
    else
        exec {fd}<&-
        shopt -q lastpipe || lastpipe=0
        shopt -s lastpipe
        : | exec {fd}<&0
        ((lastpipe)) || shopt -u lastpipe
    fi
    REPLY=$fd
}

# A new forwarder of stream $1 (1 or 2) on a new pipe; it waits for its first go.
__njt_spawn() {
    local data wake go
    __njt_pipe
    data=$REPLY
    __njt_pipe
    wake=$REPLY
    __njt_generation=$((${__njt_generation:-0} + 1))
    # The wake pipe's write end before the fork (a pipe without one reads as ended); the
    # forwarder closes its copy, as of every wake pipe.
    exec {go}>"/proc/self/fd/$wake"
    printf -v "__njt_wake_$1" %s "$go"
    # Forked from a subshell: not main's job, so a cell's `wait` never waits for it. SIGINT is
    # ignored from its start (an interrupt may come now; the cell's DEBUG trap still sees it).
    trap '' INT
    (__njt_forwarder "$1" "$__njt_generation" "$data" "$wake" &)
    trap '__njt_stop=interrupt' INT
    exec {wake}<&-
    printf -v "__njt_r_$1" %s "$data"
    printf -v "__njt_gen_$1" %s "$__njt_generation"
    printf -v "__njt_free_$1" %s F
}

# A forwarder's verdict on its pipe (F: free, B: a background process holds it): `F<tab>1<tab>7`.
__njt_take_verdict() {
    local stream=${1:2:1} current
    [[ $stream == [12] ]] || return 0
    current=__njt_gen_$stream
    if [[ ${1:4} == "${!current}" ]]; then printf -v "__njt_free_$stream" %s "${1:0:1}"; fi
}

# Before a cell: the write ends of its pipes, __njt_w_1 and __njt_w_2.
__njt_open_output() {
    local line s free data fd
    while read -t 0 -u "$__njt_fwd"; do
        IFS= read -r -u "$__njt_fwd" line && __njt_take_verdict "$line"
    done
    for s in 1 2; do
        free=__njt_free_$s data=__njt_r_$s
        if [[ -z ${!free} ]]; then
            if read -t 0 -u "${!data}"; then
                # Output, or the pipe's end, waits for the forwarder: its verdict comes at once.
                while [[ -z ${!free} ]]; do
                    IFS= read -r -u "$__njt_fwd" line && __njt_take_verdict "$line"
                done
            else
                printf -v "$free" %s B # held by a process that has written nothing since
            fi
        fi
        if [[ ${!free} == B ]]; then
            fd=${!data}
            exec {fd}<&-
            fd=__njt_wake_$s
            fd=${!fd}
            exec {fd}>&-
            printf -v "__njt_wake_$s" %s ''
            __njt_spawn "$s"
        fi
    done
    for s in 1 2; do
        data=__njt_r_$s
        exec {fd}>"/proc/self/fd/${!data}"
        printf -v "__njt_w_$s" %s "$fd"
        printf -v "__njt_free_$s" %s ''
        fd=__njt_wake_$s
        printf 'g\n' >&"${!fd}"
    done
}

__njt_spawn 1
__njt_spawn 2

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
        # Never with -p: a runtime directory removed meanwhile (the runtime ended and a new one
        # is starting) must not be made again, with the umask's mode.
        [[ -n $__njt_mkdir ]] && "$__njt_mkdir" -m 700 -- "$__njt_stage" 2>/dev/null
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

# Completion as bash's own (without programmable completion) offers it: variables after `$`,
# commands (aliases, functions, builtins, keywords, programs) in a command's place, file names
# elsewhere; with the cell's state, as main holds it. The answer goes to the emitter in a file.
# (No `=~` here: it would change the BASH_REMATCH a cell may have left.)
__njt_complete() { # the request line
    local id cursor code prefix line word plain start head last json= match quoted tilde i c j n
    local var= value=
    local -a found=() matches=()
    local -A seen=()
    id=${1#*\"id\":\"}
    id=${id%%\"*}
    # Offsets count characters, as the client's do: a UTF-8 locale for the time of this function
    # where the cells' is not (the check is silent where that locale is missing).
    local LC_ALL=${LC_ALL-} probe=$'\xc3\xa9'
    if ((${#probe} != 1)); then { LC_ALL=C.UTF-8; } 2>/dev/null; fi
    __njt_code "$1"
    code=$REPLY
    __njt_cursor "$1"
    cursor=$REPLY
    ((cursor <= ${#code})) || cursor=${#code}
    prefix=${code:0:cursor}
    line=${prefix##*$'\n'}
    # The word ends the line: back to a blank or an operator that no backslash escapes.
    i=${#line}
    while ((i > 0)); do
        c=${line:i-1:1}
        if [[ $c == [[:space:]\"\'\<\>\;\|\&\(\)\`=] ]]; then
            j=$((i - 1)) n=0
            while ((j > 0)) && [[ ${line:j-1:1} == \\ ]]; do j=$((j - 1)) n=$((n + 1)); done
            ((n % 2)) || break
        fi
        i=$((i - 1))
    done
    word=${line:i}
    head=${line:0:i}
    head=${head%"${head##*[![:blank:]]}"}
    start=$((cursor - ${#word}))
    plain=${word//\\\\/$'\001'}
    plain=${plain//\\/}
    plain=${plain//$'\001'/\\}
    if [[ $word == *'$'* ]]; then
        local name=${word##*\$} lead=${word%\$*}\$ close=
        if [[ $name == \{* ]]; then
            name=${name#\{} lead+='{' close='}'
        fi
        if [[ $name != *[!A-Za-z0-9_]* ]]; then
            mapfile -t found < <(compgen -v -- "$name")
            for match in "${found[@]}"; do
                [[ $match == __njt_* ]] || matches+=("$lead$match$close")
            done
        elif [[ $word == '$'* && $word == */* ]]; then
            # A path from a variable ($HOME/do): its files, the variable kept as it was typed.
            var=${word%%/*}
            name=${var#\$}
            name=${name#\{}
            name=${name%\}}
            if [[ -n $name && $name != *[!A-Za-z0-9_]* && ($var == "\$$name" || $var == "\${$name}") && -n ${!name-} ]]; then
                value=${!name}
                plain=$value${plain#"$var"}
            else
                var=
            fi
        fi
    fi
    if [[ $word != *'$'* || -n $var ]]; then
        last=${head##*[[:space:]\;\|\&\(\`]}
        case $head in
        '' | *[\;\|\&\(\`]) last=';' ;;
        esac
        case $last in
        ';' | if | then | else | elif | while | until | do | time | '!' | '{' | exec | command | nohup | sudo | env | xargs) [[ $plain == */* ]] || last=command ;;
        esac
        if [[ $last == command ]]; then
            if [[ -n $__njt_sort ]]; then mapfile -t found < <(compgen -c -- "$plain" | "$__njt_sort"); else mapfile -t found < <(compgen -c -- "$plain"); fi
        else
            if [[ -n $__njt_sort ]]; then mapfile -t found < <(compgen -f -- "$plain" | "$__njt_sort"); else mapfile -t found < <(compgen -f -- "$plain"); fi
        fi
        for match in "${found[@]}"; do
            [[ -z ${seen[$match]-} && $match != __njt_* ]] || continue
            seen[$match]=1
            if [[ $last != command ]]; then
                # As bash inserts them: special characters escaped, directories with a slash.
                tilde= quoted=
                if [[ -n $var ]]; then
                    tilde=$var
                    match=${match#"$value"}
                elif [[ $match == '~'* ]]; then
                    tilde=${match%%/*}
                    match=${match#"$tilde"}
                fi
                [[ -z $match ]] || printf -v quoted '%q' "$match"
                if [[ -z $tilde && -d $match ]] || [[ $tilde == '~' && -d $HOME$match ]] || [[ -n $var && -d $value$match ]]; then quoted+=/; fi
                match=$tilde$quoted
            fi
            matches+=("$match")
        done
    fi
    for match in "${matches[@]}"; do
        __njt_esc "$match"
        json+="${json:+,}\"$REPLY\""
    done
    printf '{"type":"completion","id":"%s","matches":[%s],"start":%d,"end":%d}\n' "$id" "$json" "$start" "$cursor" >"$__njt_completion"
    printf 'P\t%s\n' "$id" >&"$__njt_ctl"
    __njt_await_ack
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
    COMPLETE$'\t'*)
        __njt_complete "${__njt_request#COMPLETE$'\t'}"
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
    __njt_open_output
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
    . "$__njt_cellfile" </dev/null >&"$__njt_w_1" 2>&"$__njt_w_2"
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
    # The end markers, then `done`: the emitter reads each pipe up to its marker first. Main's
    # write ends close: a pipe that nothing else holds ends at once, and is free for the next.
    printf '%s' "$__njt_end" >&"$__njt_w_1"
    exec {__njt_w_1}>&-
    printf '%s' "$__njt_end" >&"$__njt_w_2"
    exec {__njt_w_2}>&-
    printf 'D\t%s\t%s\t%d\t%s\t%d\t%s\n' "$__njt_exec" "$__njt_status" "$__njt_count" "$__njt_duration" "$__njt_rc" "$__njt_files" >&"$__njt_ctl"
    __njt_await_ack
    __njt_status=
done
