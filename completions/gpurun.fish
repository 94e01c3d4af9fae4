# fish completion for gpurun. Enable with: gpurun completion fish | source
# (or install it as ~/.config/fish/completions/gpurun.fish).
# The candidates come from `gpurun __complete WORD...` (the last word is the one being completed):
# a first line ":DIRECTIVES" (files, dirs, nosort) then one "VALUE<TAB>DESCRIPTION" per line.

function __gpurun_complete
    set -l tokens (commandline -opc)
    set -l current (commandline -ct)
    set -l out ($tokens[1] __complete $tokens[2..-1] "$current" 2>/dev/null)
    or return 0
    test (count $out) -ge 1; or return 0
    set -l directive (string split , -- (string sub -s 2 -- $out[1]))
    if contains -- files $directive; or contains -- dirs $directive
        set -l head ''
        set -l path $current
        if string match -qr -- '^-[^=]*=' $current
            set head (string replace -r -- '=.*' '=' $current)
            set path (string replace -r -- '^[^=]*=' '' $current)
        end
        if contains -- dirs $directive
            printf '%s\n' $head(__fish_complete_directories $path)
        else
            printf '%s\n' $head(__fish_complete_path $path)
        end
        return 0
    end
    set -e out[1]
    test (count $out) -ge 1; and printf '%s\n' $out
end

complete -c gpurun -e
complete -c gpurun -f -k -a '(__gpurun_complete)'
